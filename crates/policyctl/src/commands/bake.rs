//! `policyctl bake`: a copy of the Otoroshi module with a snapshot inside
//! (the rewriting itself is [`crate::bake`]).

use crate::{bake, files, Error};
use std::path::PathBuf;
use tenantgate_policy::binary;

/// Writes a copy of the Otoroshi module with a compiled snapshot baked in.
///
/// Validates FILE (JSON or compiled) and writes a copy of WASM, the Otoroshi
/// build (dist/tenantgate-otoroshi.wasm), with the compiled snapshot in a data
/// segment. The plug-in uses it when its settings name no snapshot: each call
/// gets it with the fresh instance instead of inside its JSON input, and reads
/// only the records of the request's identities. Prints the revision, the size
/// and the module's initial memory in pages: Otoroshi's `memoryPages` must
/// exceed it (a call needs a few more pages). Bake the module `make dist`
/// builds; a new policy is a new module (give it a new `source` path so
/// Otoroshi loads it).
#[derive(Debug, clap::Args)]
#[command(override_usage = "policyctl bake --module WASM --policy FILE --out WASM")]
pub struct Args {
    /// the Otoroshi build, dist/tenantgate-otoroshi.wasm
    #[arg(long, value_name = "WASM")]
    module: PathBuf,
    /// the snapshot
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// the module to write
    #[arg(long, value_name = "WASM")]
    out: PathBuf,
}

pub fn run(args: &Args) -> Result<(), Error> {
    let snapshot = files::load_policy(&args.policy)?;
    let compiled = binary::encode(&snapshot);
    let module = files::read(&args.module)?;
    let baked = bake::bake(&module, &compiled).map_err(|source| Error::Bake {
        path: args.module.clone(),
        source,
    })?;
    files::write(&args.out, &baked.module)?;
    println!(
        "{}: revision {} baked, {} bytes of snapshot at {:#x}; module {} bytes, initial memory {} pages",
        args.out.display(),
        snapshot.revision(),
        compiled.len(),
        baked.address,
        baked.module.len(),
        baked.initial_pages
    );
    Ok(())
}
