//! C-ECHO: the Verification service.

use super::message::{command_field, encode_command};
use super::{Association, Error, ErrorKind, Step, VERIFICATION};

/// Sends C-ECHO-RQ and returns the status of the C-ECHO-RSP.
pub async fn echo(association: &mut Association, message_id: u16) -> Result<u16, Error> {
    let context = association
        .context_for(VERIFICATION)
        .ok_or(Error::new(Step::Exchange, ErrorKind::NoPresentationContext))?
        .id;
    let request = encode_command(command_field::C_ECHO_RQ, message_id, VERIFICATION, false);
    association.send_message(context, &request, None).await?;

    // A C-ECHO-RSP carries no data set: one that announces a data set is refused.
    let command = association.receive_message(context, 0).await?.command;
    command
        .response_status(command_field::C_ECHO_RSP, "C-ECHO-RSP", message_id)
        .map_err(|e| Error::protocol(Step::Exchange, e))
}
