//! `hapress render`: Kubernetes manifests (or the CRD) from a spec, and the object-graph lint.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use hapress_k8s::lint::{self, Check};
use hapress_k8s::{Manifest, RenderOptions};

/// Marker file identifying a directory written by `--out-dir` (so re-rendering may replace it).
const MARKER: &str = ".hapress-render";

/// Arguments of `hapress render`.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// Spec file.
    #[arg(short = 'f', long = "file", default_value = "hapress.yaml")]
    pub file: PathBuf,
    /// Write one file per object into this directory (replaced atomically) instead of one
    /// multi-document YAML on stdout.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["crd", "check"])]
    pub out_dir: Option<PathBuf>,
    /// Print the WordPressCluster CustomResourceDefinition and exit (no spec needed).
    #[arg(long, conflicts_with_all = ["generate_secrets", "check"])]
    pub crd: bool,
    /// Render Secrets with random passwords (otherwise they are referenced by name and must
    /// exist; the output's header shows how to create them). Makes the output non-deterministic.
    #[arg(long)]
    pub generate_secrets: bool,
    /// Lint the rendered object graph instead of printing it; exit 1 on any finding.
    #[arg(long)]
    pub check: bool,
}

/// Runs `hapress render`.
pub fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    if args.crd {
        write_stdout(&hapress_k8s::crd::yaml()?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let cluster = hapress_spec::load(&args.file, false)?;
    let manifest = hapress_k8s::render(
        &cluster,
        &RenderOptions {
            generate_secrets: args.generate_secrets,
        },
    );
    if args.check {
        return check(&manifest, &cluster);
    }
    match &args.out_dir {
        Some(dir) => {
            write_dir(&manifest, dir)?;
            eprintln!(
                "wrote {} objects to {}",
                manifest.objects.len(),
                dir.display()
            );
        }
        None => {
            write_stdout(&manifest.to_yaml()?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check(manifest: &Manifest, cluster: &hapress_spec::Cluster) -> anyhow::Result<ExitCode> {
    let findings = lint::lint(manifest, cluster);
    let mut report = String::new();
    for f in &findings {
        report.push_str(&format!("{f}\n"));
    }
    if findings.is_empty() {
        report.push_str(&format!(
            "ok: {} objects, {} checks passed:\n",
            manifest.objects.len(),
            Check::ALL.len()
        ));
        for c in Check::ALL {
            report.push_str(&format!("  {:<19} {}\n", c.name(), c.description()));
        }
    }
    write_stdout(&report)?;
    if findings.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} problem(s) found", findings.len());
        Ok(ExitCode::FAILURE)
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Writes every file into a fresh directory next to `dir`, then swaps it in: a reader never
/// sees a half-written set, and an existing directory is only replaced when hapress wrote it.
fn write_dir(manifest: &Manifest, dir: &Path) -> anyhow::Result<()> {
    let files = manifest.files()?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let replace = match fs::read_dir(dir) {
        Ok(mut entries) => {
            let empty = entries.next().is_none();
            if !empty && !dir.join(MARKER).exists() {
                anyhow::bail!(
                    "{} exists and was not written by `hapress render`; remove it or choose another --out-dir",
                    dir.display()
                );
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let staging = tempfile::Builder::new()
        .prefix(".hapress-render-")
        .tempdir_in(&parent)
        .with_context(|| {
            format!(
                "cannot create a temporary directory in {}",
                parent.display()
            )
        })?;
    for (name, text) in &files {
        fs::write(staging.path().join(name), text)
            .with_context(|| format!("cannot write {name}"))?;
    }
    fs::write(staging.path().join(MARKER), "written by hapress render\n")?;
    // tempfile creates 0700 directories; the output is ordinary, readable config.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))?;
    }
    let staged = staging.keep();
    if replace {
        let old = parent.join(format!(".hapress-render-old-{}", std::process::id()));
        fs::rename(dir, &old).with_context(|| format!("cannot move {} aside", dir.display()))?;
        if let Err(e) = fs::rename(&staged, dir) {
            // Put the previous output back rather than leave nothing.
            let _ = fs::rename(&old, dir);
            let _ = fs::remove_dir_all(&staged);
            return Err(e).with_context(|| format!("cannot create {}", dir.display()));
        }
        fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    } else if let Err(e) = fs::rename(&staged, dir) {
        let _ = fs::remove_dir_all(&staged);
        return Err(e).with_context(|| format!("cannot create {}", dir.display()));
    }
    Ok(())
}
