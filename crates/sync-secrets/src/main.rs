//! `sync-secrets`: see the contract in spec/actions.md. Not built yet.

fn main() {
    eprintln!("sync-secrets: not implemented yet");
    std::process::exit(2);
}
