//! Webhooks: endpoint secrets, Standard Webhooks signatures, the receivers
//! offergate may call, and the deliverers that run inside `serve`.

pub mod address;
pub mod deliver;
pub mod secret;
pub mod settings;
pub mod signature;

use std::sync::Arc;

use secrecy::ExposeSecret;

use self::address::Destinations;
use self::secret::Sealer;
use self::settings::WebhookSettings;
use crate::config::Settings;

/// What the webhook routes and the deliverers share, one per process.
#[derive(Clone)]
pub struct Webhooks {
    pub settings: WebhookSettings,
    pub sealer: Sealer,
    pub destinations: Arc<Destinations>,
}

impl Webhooks {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        Ok(Webhooks {
            settings: settings.webhooks.clone(),
            sealer: Sealer::from_hex(settings.secrets.key_encryption_key.expose_secret())?,
            destinations: Arc::new(Destinations::new(&settings.webhooks)),
        })
    }
}
