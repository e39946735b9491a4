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
        print!("{}", hapress_k8s::crd::yaml()?);
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
        return Ok(check(&manifest, &cluster));
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
            let yaml = manifest.to_yaml()?;
            let mut out = std::io::stdout().lock();
            out.write_all(yaml.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check(manifest: &Manifest, cluster: &hapress_spec::Cluster) -> ExitCode {
    let findings = lint::lint(manifest, cluster);
    for f in &findings {
        println!("{f}");
    }
    if findings.is_empty() {
        println!(
            "ok: {} objects, {} checks passed:",
            manifest.objects.len(),
            Check::ALL.len()
        );
        for c in Check::ALL {
            println!("  {:<19} {}", c.name(), c.description());
        }
        ExitCode::SUCCESS
    } else {
        eprintln!("{} problem(s) found", findings.len());
        ExitCode::FAILURE
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
