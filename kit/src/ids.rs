//! Validation of the ids that cross the API (rooms, devices), in one place so
//! every role refuses the same inputs with the same words.

use tonic::Status;

/// Longest id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Checks that `value` is 1 to 128 bytes of ASCII letters, digits and
/// `- _ . :`; the error names the field and the rule.
pub fn validate(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "{field} is {} bytes; the limit is {MAX_ID_BYTES}",
            value.len()
        )));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(Status::invalid_argument(format!(
            "{field} contains {bad:?}; use letters, digits, '-', '_', '.' or ':'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_plain_ids_and_explains_bad_ones() {
        assert!(validate("room_id", "live:42_a-b.c").is_ok());
        let empty = validate("room_id", "").unwrap_err();
        assert_eq!(empty.code(), tonic::Code::InvalidArgument);
        assert!(empty.message().contains("room_id is required"));
        assert!(
            validate("room_id", &"x".repeat(129))
                .unwrap_err()
                .message()
                .contains("limit is 128")
        );
        assert!(validate("room_id", "a b").unwrap_err().message().contains("' '"));
    }
}
