//! `push-registry`: see the contract in spec/actions.md. Not built yet.

fn main() {
    eprintln!("push-registry: not implemented yet");
    std::process::exit(2);
}
