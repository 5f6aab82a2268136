//! `deploy-remote`: see the contract in spec/actions.md. Not built yet.

fn main() {
    eprintln!("deploy-remote: not implemented yet");
    std::process::exit(2);
}
