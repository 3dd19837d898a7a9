//! The `hubbub.v1.Gift` handlers. The contract is final; the ledger lands
//! with its own issue, and until then every call answers UNIMPLEMENTED.

use hubbub_proto::v1::{self as pb, gift_server::Gift};
use tonic::{Request, Response, Status};

/// Serves `hubbub.v1.Gift`.
#[derive(Debug, Clone, Default)]
pub struct GiftApi;

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("Gift.{rpc} is not available in this release yet"))
}

#[tonic::async_trait]
impl Gift for GiftApi {
    async fn send_gift(
        &self,
        _: Request<pb::GiftSendGiftRequest>,
    ) -> Result<Response<pb::GiftSendGiftResponse>, Status> {
        Err(not_yet("SendGift"))
    }

    async fn pull_gifts(
        &self,
        _: Request<pb::GiftPullGiftsRequest>,
    ) -> Result<Response<pb::GiftPullGiftsResponse>, Status> {
        Err(not_yet("PullGifts"))
    }
}
