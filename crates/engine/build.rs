//! Generates the protobuf types of domicile.v1's ResidencyService (the BatchDecide request the
//! engine parses and the decisions it encodes) and AccessService (the access summaries it
//! encodes) from the repository's .proto sources, with protox (a protobuf compiler in Rust: no
//! `protoc` needed).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let protos = manifest.join("../../protos");
    let sources = [protos.join("domicile/v1/residency.proto"), protos.join("domicile/v1/access.proto")];
    for source in &sources {
        println!("cargo:rerun-if-changed={}", source.display());
    }
    let descriptors = protox::compile(&sources, [&protos])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
