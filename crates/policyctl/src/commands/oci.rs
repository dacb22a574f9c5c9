//! `policyctl oci`: the Envoy filter as a Wasm OCI image (`make oci`).

use crate::oci::{self, OciError};
use crate::{files, Error};
use std::path::{Path, PathBuf};

/// Packages a Wasm module as an OCI image, reproducibly.
///
/// Writes MODULE as an OCI image in the *compat* variant of the Wasm image
/// specification, the format Istio's WasmPlugin and Envoy Gateway's
/// EnvoyExtensionPolicy fetch: one `application/vnd.oci.image.layer.v1.tar+gzip`
/// layer, a tar holding the module as `plugin.wasm`. DIR becomes an OCI image
/// layout (`oci-layout`, `index.json`, `blobs/sha256/`) with the image tagged
/// TAG (push it with `skopeo copy oci:DIR:TAG docker://REGISTRY/REPO:TAG`);
/// `--tar` also writes the layout as one tarball (`skopeo copy
/// oci-archive:FILE ...`, `crane push FILE ...`). Every timestamp is zero and
/// every order fixed, so the same module always gives the same digest.
/// Prints the manifest digest (`sha256:...`, what WasmPlugin's `sha256` and
/// an `@sha256:` reference pin) on stdout, the rest on stderr.
#[derive(Debug, clap::Args)]
#[command(override_usage = "policyctl oci --module FILE --out DIR [--tar FILE] [--tag TAG]")]
pub struct Args {
    /// the Wasm module (dist/tenantgate.wasm)
    #[arg(long, value_name = "FILE")]
    module: PathBuf,
    /// the OCI image layout to write (replaced if it is one already)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// also write the layout as a tarball
    #[arg(long, value_name = "FILE")]
    tar: Option<PathBuf>,
    /// the tag in the layout's index (`org.opencontainers.image.ref.name`)
    #[arg(long, value_name = "TAG", default_value = env!("CARGO_PKG_VERSION"))]
    tag: String,
}

/// Why `oci` could not write the image.
#[derive(Debug, thiserror::Error)]
pub enum OciCommandError {
    #[error("`{}`: {source}", path.display())]
    Image { path: PathBuf, source: OciError },
    #[error("`{}` exists and is not an OCI image layout: not replacing it", .0.display())]
    NotALayout(PathBuf),
    #[error("cannot replace `{}`: {source}", path.display())]
    Replace {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn run(args: &Args) -> Result<(), Error> {
    let module = files::read(&args.module)?;
    let image_error = |source| OciCommandError::Image {
        path: args.module.clone(),
        source,
    };
    let image = oci::build_image(&module).map_err(image_error)?;
    let layout = oci::layout_files(&image, &args.tag).map_err(image_error)?;
    fresh_directory(&args.out)?;
    for (name, bytes) in &layout {
        let path = args.out.join(name);
        if let Some(parent) = path.parent() {
            create_dir(parent)?;
        }
        files::write(&path, bytes)?;
    }
    if let Some(tar) = &args.tar {
        files::write(tar, &oci::layout_tar(&layout).map_err(image_error)?)?;
    }
    let digest = image.manifest.digest();
    eprintln!(
        "{}: OCI image layout, tag {} (Wasm image, compat variant: one {} layer holding {})\n\
         module   {} ({} bytes)\n\
         layer    {} ({} bytes)\n\
         config   {}\n\
         manifest {}",
        args.out.display(),
        args.tag,
        oci::LAYER_MEDIA_TYPE,
        oci::MODULE_FILE_NAME,
        oci::sha256_digest(&module),
        module.len(),
        image.layer.digest(),
        image.layer.bytes.len(),
        image.config.digest(),
        digest,
    );
    if let Some(tar) = &args.tar {
        eprintln!("tarball  {}", tar.display());
    }
    println!("{digest}");
    Ok(())
}

/// Removes `dir` if it is an OCI image layout (so no stale blob stays), and
/// refuses anything else that is there.
fn fresh_directory(dir: &Path) -> Result<(), OciCommandError> {
    if !dir.exists() {
        return Ok(());
    }
    let empty = std::fs::read_dir(dir)
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(false);
    if empty {
        return Ok(());
    }
    if !dir.join("oci-layout").is_file() {
        return Err(OciCommandError::NotALayout(dir.to_path_buf()));
    }
    std::fs::remove_dir_all(dir).map_err(|source| OciCommandError::Replace {
        path: dir.to_path_buf(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), files::FileError> {
    std::fs::create_dir_all(dir).map_err(|source| files::FileError::Create {
        path: dir.to_path_buf(),
        source,
    })
}
