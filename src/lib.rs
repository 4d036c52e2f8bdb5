//! assistd: the gRPC backend of a personal AI assistant.
//!
//! This crate is the transport edge only: the generated protobuf code, the server (gRPC,
//! grpc-web, reflection, health on one port), authentication, the mapping of domain errors to
//! statuses, and one module per service that converts between protobuf and the domain in
//! `assistd-core`. [`server::Application`] is the seam tests and the binary share.

pub mod bearer;
pub mod codec;
pub mod config;
pub mod metrics;
mod paging;
pub mod request_context;
pub mod server;
pub mod services;
pub mod status;
pub mod telemetry;
pub mod tls;

/// Generated protobuf types, servers and clients, one module per package.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    /// The encoded descriptor set of every assistd contract, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/assistd_descriptor.bin"));

    /// `assistd.auth.*`
    pub mod auth {
        /// `assistd.auth.v1`
        pub mod v1 {
            tonic::include_proto!("assistd.auth.v1");
        }
    }
    /// `assistd.apikey.*`
    pub mod apikey {
        /// `assistd.apikey.v1`
        pub mod v1 {
            tonic::include_proto!("assistd.apikey.v1");
        }
    }
    /// `assistd.chat.*`
    pub mod chat {
        /// `assistd.chat.v1`
        pub mod v1 {
            tonic::include_proto!("assistd.chat.v1");
        }
    }
    /// `assistd.gmail.*`
    pub mod gmail {
        /// `assistd.gmail.v1`
        pub mod v1 {
            tonic::include_proto!("assistd.gmail.v1");
        }
    }
    /// `assistd.preferences.*`
    pub mod preferences {
        /// `assistd.preferences.v1`
        pub mod v1 {
            tonic::include_proto!("assistd.preferences.v1");
        }
    }
}
