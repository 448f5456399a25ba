//! Wire types of hookmesh's gRPC API (`/hookmesh.v1.<Service>/<Method>`), generated from
//! `proto/hookmesh/v1/*.proto`, and the descriptor set for server reflection.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("hookmesh.v1");
}

pub mod auth;
pub mod convert;
pub mod status;

/// Encoded `FileDescriptorSet` of every hookmesh proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("hookmesh_descriptor");
