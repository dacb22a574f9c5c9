//! A Wasm module as an OCI image, byte for byte reproducible (`policyctl oci`).
//!
//! The image is the *compat* variant of the Wasm image specification
//! (github.com/solo-io/wasm, `spec-compat.md`), the one Istio's and Envoy
//! Gateway's image fetchers (`pkg/wasm/imagefetcher.go`,
//! `internal/wasm/imagefetcher.go`) try first for OCI manifests: a plain OCI
//! image manifest whose last (here: only) layer has the media type
//! `application/vnd.oci.image.layer.v1.tar+gzip` and is a tar holding the
//! module as `plugin.wasm`. Any registry stores it and any OCI client copies
//! it, since it is an ordinary image.
//!
//! Reproducible: the tar has fixed modes, owners and a zero mtime, the gzip
//! stream a zero mtime and a fixed level, the JSON documents a fixed key
//! order and no timestamps; so the same module gives the same manifest digest.

use flate2::{Compression, GzBuilder};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;

/// The media type of the image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of the image index (`index.json`).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The media type of the image configuration.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The layer media type the compat variant requires.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The file in the layer that Istio and Envoy Gateway load.
pub const MODULE_FILE_NAME: &str = "plugin.wasm";

/// One content-addressed blob of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Blob {
    /// `sha256:<hex>`.
    pub fn digest(&self) -> String {
        sha256_digest(&self.bytes)
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest(), "size": self.bytes.len()})
    }
}

/// The image: its config, its one layer and the manifest naming both.
#[derive(Debug, Clone)]
pub struct Image {
    pub config: Blob,
    pub layer: Blob,
    pub manifest: Blob,
    /// The uncompressed layer's digest (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

/// `sha256:` and the lower-case hex SHA-256 of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("not a WebAssembly module (no `\\0asm` header)")]
    NotWasm,
    #[error("a tar entry name longer than 100 bytes: `{0}`")]
    LongName(String),
    #[error("a file of {0} bytes does not fit a tar header")]
    TooLarge(usize),
    #[error("cannot compress the layer: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("cannot render JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Builds the image of `module`.
pub fn build_image(module: &[u8]) -> Result<Image, OciError> {
    if !module.starts_with(b"\0asm") {
        return Err(OciError::NotWasm);
    }
    let mut tar = TarWriter::default();
    tar.file(MODULE_FILE_NAME, module)?;
    let layer_tar = tar.finish();
    let diff_id = sha256_digest(&layer_tar);
    let layer = Blob {
        media_type: LAYER_MEDIA_TYPE,
        bytes: gzip(&layer_tar)?,
    };
    // The platform is the one containerd's Wasm shims and OCI's Wasm
    // guidance use; Istio and Envoy Gateway read only the layers.
    let config = Blob {
        media_type: CONFIG_MEDIA_TYPE,
        bytes: serde_json::to_vec(&json!({
            "architecture": "wasm",
            "os": "wasip1",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "config": {},
        }))?,
    };
    let mut layer_descriptor = layer.descriptor();
    if let Some(object) = layer_descriptor.as_object_mut() {
        object.insert(
            "annotations".into(),
            json!({"org.opencontainers.image.title": MODULE_FILE_NAME}),
        );
    }
    let manifest = Blob {
        media_type: MANIFEST_MEDIA_TYPE,
        bytes: serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config.descriptor(),
            "layers": [layer_descriptor],
        }))?,
    };
    Ok(Image {
        config,
        layer,
        manifest,
        diff_id,
    })
}

/// gzip with a zero mtime, no file name, level 9 (miniz_oxide, pinned by
/// Cargo.lock: another deflate implementation may compress differently).
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, OciError> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    encoder.write_all(bytes).map_err(OciError::Gzip)?;
    encoder.finish().map_err(OciError::Gzip)
}

/// The files of an OCI image layout (`oci-layout`, `index.json`,
/// `blobs/sha256/...`) holding `image` under the tag `tag`, in the order a
/// tarball lists them: directories first, blobs by digest.
pub fn layout_files(image: &Image, tag: &str) -> Result<Vec<(String, Vec<u8>)>, OciError> {
    let mut manifest_descriptor = image.manifest.descriptor();
    if let Some(object) = manifest_descriptor.as_object_mut() {
        object.insert(
            "annotations".into(),
            json!({"org.opencontainers.image.ref.name": tag}),
        );
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [manifest_descriptor],
    });
    let mut blobs: Vec<(String, Vec<u8>)> = [&image.config, &image.layer, &image.manifest]
        .iter()
        .map(|blob| {
            let digest = blob.digest();
            let hex = digest.trim_start_matches("sha256:");
            (format!("blobs/sha256/{hex}"), blob.bytes.clone())
        })
        .collect();
    blobs.sort();
    let mut files = vec![
        (
            "oci-layout".to_string(),
            serde_json::to_vec(&json!({"imageLayoutVersion": "1.0.0"}))?,
        ),
        ("index.json".to_string(), serde_json::to_vec(&index)?),
    ];
    files.extend(blobs);
    Ok(files)
}

/// The layout as one tar (what `skopeo copy oci-archive:FILE` and
/// `crane push FILE` read): directories, then `files` in their order.
pub fn layout_tar(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, OciError> {
    let mut tar = TarWriter::default();
    tar.directory("blobs/")?;
    tar.directory("blobs/sha256/")?;
    for (name, bytes) in files {
        tar.file(name, bytes)?;
    }
    Ok(tar.finish())
}

/// A ustar archive with fixed metadata: mode 0644 (0755 for directories),
/// owner root:root (0:0), mtime 0.
#[derive(Debug, Default)]
struct TarWriter {
    out: Vec<u8>,
}

const BLOCK: usize = 512;

impl TarWriter {
    fn file(&mut self, name: &str, bytes: &[u8]) -> Result<(), OciError> {
        self.entry(name, b'0', 0o644, bytes)
    }

    fn directory(&mut self, name: &str) -> Result<(), OciError> {
        self.entry(name, b'5', 0o755, &[])
    }

    fn entry(&mut self, name: &str, kind: u8, mode: u32, bytes: &[u8]) -> Result<(), OciError> {
        if name.len() > 100 {
            return Err(OciError::LongName(name.to_string()));
        }
        // 11 octal digits: sizes below 8 GiB.
        if bytes.len() >= 1 << 33 {
            return Err(OciError::TooLarge(bytes.len()));
        }
        let header = |checksum: &[u8]| {
            let mut h = Vec::with_capacity(BLOCK);
            field(&mut h, name.as_bytes(), 100);
            field(&mut h, format!("{mode:07o}").as_bytes(), 8);
            field(&mut h, b"0000000", 8); // uid
            field(&mut h, b"0000000", 8); // gid
            field(&mut h, format!("{:011o}", bytes.len()).as_bytes(), 12);
            field(&mut h, b"00000000000", 12); // mtime
            field(&mut h, checksum, 8);
            h.push(kind);
            field(&mut h, b"", 100); // link name
            field(&mut h, b"ustar\x0000", 8); // magic and version
            field(&mut h, b"root", 32);
            field(&mut h, b"root", 32);
            field(&mut h, b"", 8 + 8 + 155); // devices, prefix
            h.resize(BLOCK, 0);
            h
        };
        // The checksum is over the header with its own field as spaces.
        let sum: u32 = header(b"        ").iter().map(|&b| u32::from(b)).sum();
        self.out
            .extend_from_slice(&header(format!("{sum:06o}\0 ").as_bytes()));
        self.out.extend_from_slice(bytes);
        let padding = (BLOCK - bytes.len() % BLOCK) % BLOCK;
        self.out.resize(self.out.len() + padding, 0);
        Ok(())
    }

    /// The archive, ended by two zero blocks.
    fn finish(mut self) -> Vec<u8> {
        self.out.resize(self.out.len() + 2 * BLOCK, 0);
        self.out
    }
}

/// `value`, then zeros up to `width` bytes.
fn field(out: &mut Vec<u8>, value: &[u8], width: usize) {
    let start = out.len();
    out.extend(value.iter().take(width));
    out.resize(start + width, 0);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn module() -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend((0..2000u32).map(|i| (i % 251) as u8));
        m
    }

    #[test]
    fn the_same_module_gives_the_same_bytes() {
        let a = build_image(&module()).unwrap();
        let b = build_image(&module()).unwrap();
        assert_eq!(a.manifest, b.manifest);
        assert_eq!(a.layer, b.layer);
        let ta = layout_tar(&layout_files(&a, "t").unwrap()).unwrap();
        let tb = layout_tar(&layout_files(&b, "t").unwrap()).unwrap();
        assert_eq!(ta, tb);
        let mut other = module();
        other.push(1);
        assert_ne!(
            build_image(&other).unwrap().manifest.digest(),
            a.manifest.digest()
        );
    }

    #[test]
    fn the_layer_is_a_gzipped_tar_holding_plugin_wasm() {
        let image = build_image(&module()).unwrap();
        let mut tar = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&image.layer.bytes[..]),
            &mut tar,
        )
        .unwrap();
        assert_eq!(sha256_digest(&tar), image.diff_id);
        assert_eq!(&tar[..11], b"plugin.wasm");
        assert_eq!(&tar[257..263], b"ustar\0");
        let size = usize::from_str_radix(std::str::from_utf8(&tar[124..135]).unwrap(), 8).unwrap();
        assert_eq!(size, module().len());
        assert_eq!(&tar[512..512 + size], &module()[..]);
        // Header checksum: the sum of the header with the field as spaces.
        let mut header = tar[..512].to_vec();
        let stored = u32::from_str_radix(std::str::from_utf8(&header[148..154]).unwrap(), 8);
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(stored.unwrap(), sum);
        assert_eq!(tar.len() % 512, 0);
    }

    #[test]
    fn the_manifest_names_one_layer_of_the_compat_media_type() {
        let image = build_image(&module()).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
        assert_eq!(manifest["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(manifest["layers"][0]["digest"], image.layer.digest());
        assert_eq!(manifest["config"]["digest"], image.config.digest());
    }

    #[test]
    fn refuses_what_is_not_wasm() {
        assert!(matches!(build_image(b"hello"), Err(OciError::NotWasm)));
    }
}
