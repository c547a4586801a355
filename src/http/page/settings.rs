//! `[hosted]`: the hosted verification page's settings.

use std::path::PathBuf;

use serde::Deserialize;

use crate::domain::session::{BrandColour, parse_origin};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HostedSettings {
    /// The page's own origin as shoppers reach it (`https://verify.shop.example`);
    /// empty: the origin the checkout called the API on.
    pub public_url: String,
    /// Origins a session's `return_url` may be on.
    pub return_origins: Vec<String>,
    pub session_ttl_secs: u64,
    /// Attempts one session allows; then it is `not_verified`.
    pub max_attempts: i32,
    pub brand_name: String,
    pub brand_colour: String,
    /// A PNG, SVG or WebP file served as the page's logo; empty: none.
    pub logo_file: String,
}

impl Default for HostedSettings {
    fn default() -> Self {
        HostedSettings {
            public_url: String::new(),
            return_origins: Vec::new(),
            session_ttl_secs: 1800,
            max_attempts: 3,
            brand_name: "offergate".into(),
            brand_colour: "#1d4ed8".into(),
            logo_file: String::new(),
        }
    }
}

/// The largest logo served.
pub const LOGO_MAX_BYTES: u64 = 256 * 1024;

impl HostedSettings {
    pub fn validate(&self) -> Result<(), String> {
        for origin in &self.return_origins {
            parse_origin(origin).map_err(|e| format!("hosted.return_origins: {e}"))?;
        }
        if !self.public_url.is_empty() {
            parse_origin(&self.public_url).map_err(|e| format!("hosted.public_url: {e}"))?;
        }
        if !(60..=86_400).contains(&self.session_ttl_secs) {
            return Err("hosted.session_ttl_secs must be 60 to 86400".into());
        }
        if !(1..=20).contains(&self.max_attempts) {
            return Err("hosted.max_attempts must be 1 to 20".into());
        }
        let name = self.brand_name.trim().chars().count();
        if name == 0 || name > 100 {
            return Err("hosted.brand_name must be 1 to 100 characters".into());
        }
        BrandColour::parse(&self.brand_colour).map_err(|e| format!("hosted.brand_colour: {e}"))?;
        if let Some(path) = self.logo() {
            let kind_ok = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("png" | "svg" | "webp")
            );
            let size = std::fs::metadata(&path).map(|m| m.len());
            if !kind_ok {
                return Err("hosted.logo_file must be a .png, .svg or .webp file".into());
            }
            match size {
                Ok(size) if size <= LOGO_MAX_BYTES => {}
                Ok(_) => return Err("hosted.logo_file must be at most 256 KiB".into()),
                Err(e) => return Err(format!("hosted.logo_file: {}: {e}", path.display())),
            }
        }
        Ok(())
    }

    pub fn logo(&self) -> Option<PathBuf> {
        (!self.logo_file.is_empty()).then(|| PathBuf::from(&self.logo_file))
    }

    /// The allowed origins, as `parse_origin` writes them.
    pub fn origins(&self) -> Vec<String> {
        self.return_origins
            .iter()
            .filter_map(|o| parse_origin(o).ok())
            .collect()
    }
}
