//! `KeyStore`: the server's part of end-to-end encryption, key distribution.
//! Each device uploads its public identity key, a signed prekey and a batch
//! of one-time prekeys; a member fetches the devices and keys of a group's
//! members, claiming one one-time key per device (each is handed out once),
//! which is what Signal- and Matrix-style clients need to open sessions.
//! The server never sees a private key; what it can see is in MODEL.md.
//! Two backends on the group store's database (`postgres_keys.rs`,
//! `sqlite_keys.rs`), one conformance suite (`tests/keys.rs`).

use super::{StoreError, StoreResult};
use std::future::Future;

/// Bytes per public key or signature, at most.
pub const MAX_KEY_BYTES: usize = 1024;
/// One-time keys a device may hold at once.
pub const MAX_ONE_TIME_KEYS: usize = 100;
/// Devices with keys per user.
pub const MAX_DEVICES_PER_USER: usize = 16;
/// Members named in one claim.
pub const MAX_CLAIM_USERS: usize = 50;

/// A device's long-term public keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceKeys {
    /// Fixed for the device's life: a reinstalled app is a new device.
    pub identity_key: Vec<u8>,
    /// Rotated by the client from time to time.
    pub signed_prekey: Vec<u8>,
    /// The identity key's signature of the signed prekey (checked by the
    /// clients, not the server).
    pub signed_prekey_signature: Vec<u8>,
}

/// A one-time prekey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeKey {
    /// The client's id for it, 1 to 64 bytes.
    pub key_id: String,
    /// The public key.
    pub public_key: Vec<u8>,
}

/// What a member gets for one device of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceBundle {
    /// The device's user, a member.
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// Its public keys.
    pub keys: DeviceKeys,
    /// One one-time key, now claimed (None when the device had none left:
    /// the client falls back to the signed prekey).
    pub one_time_key: Option<OneTimeKey>,
}

/// Public keys of devices; see the module documentation.
pub trait KeyStore: Send + Sync + 'static {
    /// Stores the device's keys and adds `one_time` keys (a key id it ever
    /// had is kept as it was, claimed or not, so a retried upload is
    /// harmless and never hands a claimed key out again). Returns the
    /// unclaimed one-time keys the device now holds.
    fn upload_keys(
        &self,
        user_id: &str,
        device_id: &str,
        keys: &DeviceKeys,
        one_time: &[OneTimeKey],
    ) -> impl Future<Output = StoreResult<u32>> + Send;

    /// The devices with keys of the current members among `user_ids` (1 to
    /// `MAX_CLAIM_USERS`) but the actor's own `device_id`, by user then
    /// device, each with one one-time key claimed for the actor. Only
    /// members may ask.
    fn claim_group_keys(
        &self,
        actor: &str,
        device_id: &str,
        group_id: &str,
        user_ids: &[String],
    ) -> impl Future<Output = StoreResult<Vec<DeviceBundle>>> + Send;
}

fn invalid(message: String) -> StoreError {
    StoreError::InvalidArgument(message)
}

fn key(what: &str, bytes: &[u8]) -> Result<(), StoreError> {
    if bytes.is_empty() || bytes.len() > MAX_KEY_BYTES {
        return Err(invalid(format!(
            "{what} must be 1 to {MAX_KEY_BYTES} bytes, got {}",
            bytes.len()
        )));
    }
    Ok(())
}

/// The checks of an upload both backends make before touching the store.
pub(crate) fn upload(keys: &DeviceKeys, one_time: &[OneTimeKey]) -> Result<(), StoreError> {
    key("identity_key", &keys.identity_key)?;
    key("signed_prekey", &keys.signed_prekey)?;
    key("signed_prekey_signature", &keys.signed_prekey_signature)?;
    if one_time.len() > MAX_ONE_TIME_KEYS {
        return Err(StoreError::ResourceExhausted(format!(
            "{} one-time keys in one upload; a device holds at most {MAX_ONE_TIME_KEYS}",
            one_time.len()
        )));
    }
    for k in one_time {
        if k.key_id.is_empty() || k.key_id.len() > 64 {
            return Err(invalid(format!(
                "every one-time key_id must be 1 to 64 bytes, got {}",
                k.key_id.len()
            )));
        }
        super::rules::printable("every one-time key_id", &k.key_id)?;
        key("every one-time public_key", &k.public_key)?;
    }
    Ok(())
}

/// The users of a claim.
pub(crate) fn claim_users(user_ids: &[String]) -> Result<(), StoreError> {
    if user_ids.is_empty() || user_ids.len() > MAX_CLAIM_USERS {
        return Err(invalid(format!(
            "user_ids must name 1 to {MAX_CLAIM_USERS} members per claim, got {}; page through the members",
            user_ids.len()
        )));
    }
    user_ids.iter().try_for_each(|u| super::rules::id("every user id", u))
}

/// A device's identity key never changes.
pub(crate) fn same_identity(device_id: &str, stored: Option<&[u8]>, keys: &DeviceKeys) -> Result<(), StoreError> {
    match stored {
        Some(stored) if stored != keys.identity_key.as_slice() => Err(identity_taken(device_id)),
        _ => Ok(()),
    }
}

/// The refusal of another identity key for a device that has one.
pub(crate) fn identity_taken(device_id: &str) -> StoreError {
    StoreError::FailedPrecondition(format!(
        "device {device_id} already has another identity key; an identity key is fixed for a device's life \
         (a reinstalled app registers as a new device)"
    ))
}

/// Room for a new device, and for the one-time keys it would hold.
pub(crate) fn room_for(new_device: bool, devices: usize, held_after: usize) -> Result<(), StoreError> {
    if new_device && devices >= MAX_DEVICES_PER_USER {
        return Err(StoreError::ResourceExhausted(format!(
            "a user may register keys for {MAX_DEVICES_PER_USER} devices; this one would be one more"
        )));
    }
    if held_after > MAX_ONE_TIME_KEYS {
        return Err(StoreError::ResourceExhausted(format!(
            "the device would hold {held_after} one-time keys; at most {MAX_ONE_TIME_KEYS}: upload fewer"
        )));
    }
    Ok(())
}

/// A device's keys as both backends read them.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct KeysRow {
    pub user_id: String,
    pub device_id: String,
    pub identity_key: Vec<u8>,
    pub signed_prekey: Vec<u8>,
    pub signed_prekey_signature: Vec<u8>,
}

/// A claimed one-time key as both backends read it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ClaimedRow {
    pub user_id: String,
    pub device_id: String,
    pub key_id: String,
    pub public_key: Vec<u8>,
}

/// The bundles of `devices` with the keys `claimed` for them.
pub(crate) fn bundles(devices: Vec<KeysRow>, claimed: Vec<ClaimedRow>) -> Vec<DeviceBundle> {
    let mut claimed: std::collections::HashMap<(String, String), OneTimeKey> = claimed
        .into_iter()
        .map(|c| {
            (
                (c.user_id, c.device_id),
                OneTimeKey {
                    key_id: c.key_id,
                    public_key: c.public_key,
                },
            )
        })
        .collect();
    devices
        .into_iter()
        .map(|d| DeviceBundle {
            one_time_key: claimed.remove(&(d.user_id.clone(), d.device_id.clone())),
            user_id: d.user_id,
            device_id: d.device_id,
            keys: DeviceKeys {
                identity_key: d.identity_key,
                signed_prekey: d.signed_prekey,
                signed_prekey_signature: d.signed_prekey_signature,
            },
        })
        .collect()
}
