//! The `glufuse` command line; see `glufuse --help` and `glufuse::cli`.

fn main() {
    std::process::exit(glufuse::cli::main());
}
