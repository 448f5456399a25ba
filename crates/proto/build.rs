//! Generates the gRPC code with a vendored `protoc`, so a fresh machine needs no system
//! compiler, plus the encoded descriptor set that server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let root = "../../proto";
    let files = ["hookmesh/v1/events.proto", "hookmesh/v1/registry.proto", "hookmesh/v1/delivery.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={root}/{f}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("hookmesh_descriptor.bin"))
        .compile_protos(&files.map(|f| format!("{root}/{f}")), &[root.to_string()])?;
    Ok(())
}
