//! `create_acls`, `delete_acls` and `list_acls`: the ACLs changed on a
//! blocking thread (a change is written and synced before it is answered),
//! listed from memory. Served only while authorization is on: ACLs that are
//! not enforced are refused with SECURITY_DISABLED rather than taken
//! silently (`herald acl add --data-dir` prepares them with the broker
//! stopped).

use actix::prelude::*;
use herald_actors::error::{BrokerError, ErrorCode};

use super::budget::Admission;
use super::Connection;
use crate::protocol::Request;
use crate::protocol::*;

impl Connection {
    pub(super) fn dispatch_acls(
        &mut self,
        correlation_id: u32,
        request: Request,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        if !self.authorizer.enabled() {
            let error = BrokerError::new(
                ErrorCode::SECURITY_DISABLED,
                "authorization is off (security.authorization = false): ACLs would not be enforced; \\
                 prepare them with `herald acl add --data-dir DIR` while the broker is stopped",
            );
            return self.send_error(correlation_id, &error);
        }
        let authorizer = self.authorizer.clone();
        match request {
            Request::CreateAcls(r) => self.respond(
                correlation_id,
                permit,
                async move {
                    let created = blocking(move || authorizer.create(r.acls)).await?;
                    Ok(Some(CreateAclsResponse { created }))
                },
                ctx,
            ),
            Request::DeleteAcls(r) => self.respond(
                correlation_id,
                permit,
                async move {
                    let deleted = blocking(move || authorizer.delete(&r.filters)).await?;
                    Ok(Some(DeleteAclsResponse { deleted }))
                },
                ctx,
            ),
            Request::ListAcls(filter) => {
                let acls = authorizer.list(&filter);
                self.respond(correlation_id, permit, async move { Ok(Some(ListAclsResponse { acls })) }, ctx)
            }
            _ => {}
        }
    }
}

/// Runs `work` on a blocking thread (it writes and syncs a file).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(BrokerError::new(ErrorCode::UNKNOWN_SERVER_ERROR, format!("a change to the ACLs failed: {e}")))
    })
}
