# Shared by the bench scripts (sourced, from the repository root).

# Installs what is missing (scripts/setup.sh with the given options), builds the release binary
# and sets $H to it.
bench_prepare() {
  scripts/setup.sh "$@" >/dev/null
  export PATH="$HOME/.cargo/bin:$PATH"
  cargo build --release --quiet -p hapress
  H=$PWD/target/release/hapress
}

# Sets $WORK to a new directory under /tmp named after $1; www-data workers must reach it.
bench_workdir() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 755 "$WORK"
}
