//! Store errors as S3 answers them: the codes and messages S3 itself sends.

use crate::verify::VerifyError;
use nimbus_aws::RequestId;
use nimbus_store::ObjectError;
use s3s::{S3Error, S3ErrorCode, s3_error};

/// `error` as S3 reports it. `owner` is the caller's app (for `BucketAlreadyOwnedByYou`).
pub(crate) fn s3_error(error: ObjectError, caller_owns: impl Fn(Option<&str>) -> bool) -> S3Error {
    match error {
        ObjectError::NoSuchBucket(_) => {
            s3_error!(NoSuchBucket, "The specified bucket does not exist")
        }
        ObjectError::BucketExists { app, .. } if caller_owns(app.as_deref()) => s3_error!(
            BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it."
        ),
        ObjectError::BucketExists { .. } => s3_error!(
            BucketAlreadyExists,
            "The requested bucket name is not available. The bucket namespace is shared by all \
             users of the system. Please select a different name and try again."
        ),
        ObjectError::BucketNotEmpty(_) => {
            s3_error!(
                BucketNotEmpty,
                "The bucket you tried to delete is not empty"
            )
        }
        ObjectError::NoSuchKey { .. } => s3_error!(NoSuchKey, "The specified key does not exist."),
        ObjectError::PreconditionFailed => precondition_failed(),
        ObjectError::InvalidKey(message) if message.contains("at most") => {
            s3_error!(KeyTooLongError, "Your key is too long")
        }
        ObjectError::InvalidKey(message) => {
            S3Error::with_message(S3ErrorCode::InvalidArgument, message)
        }
        ObjectError::InvalidRange { .. } => {
            s3_error!(InvalidRange, "The requested range is not satisfiable")
        }
        ObjectError::NoSuchUpload(_) => s3_error!(
            NoSuchUpload,
            "The specified upload does not exist. The upload ID may be invalid, or the upload may \
             have been aborted or completed."
        ),
        ObjectError::InvalidPart(_) => s3_error!(
            InvalidPart,
            "One or more of the specified parts could not be found. The part may not have been \
             uploaded, or the specified entity tag may not match the part's entity tag."
        ),
        ObjectError::InvalidPartOrder => s3_error!(
            InvalidPartOrder,
            "The list of parts was not in ascending order. The parts list must be specified in \
             order by part number."
        ),
        ObjectError::PartTooSmall { .. } => s3_error!(
            EntityTooSmall,
            "Your proposed upload is smaller than the minimum allowed object size."
        ),
        ObjectError::Body(source) => body_error(source),
        ObjectError::Backend(source) => {
            tracing::error!(error = %source, "object store");
            let mut error = s3_error!(
                InternalError,
                "We encountered an internal error. Please try again."
            );
            error.set_source(source);
            error
        }
    }
}

pub(crate) fn precondition_failed() -> S3Error {
    s3_error!(
        PreconditionFailed,
        "At least one of the pre-conditions you specified did not hold"
    )
}

/// Why a request body could not be stored: a checksum that did not match, an S3 error the
/// framing raised (a chunk's signature), or a body that ended early.
fn body_error(source: nimbus_store::BoxError) -> S3Error {
    let source = match source.downcast::<VerifyError>() {
        Ok(verify) => return verify.to_s3(),
        Err(source) => source,
    };
    match source.downcast::<S3Error>() {
        Ok(error) => *error,
        Err(source) => {
            let mut error = s3_error!(
                IncompleteBody,
                "You did not provide the number of bytes specified by the Content-Length HTTP \
                 header."
            );
            error.set_source(source);
            error
        }
    }
}

/// Quote the request's id in the error body, as S3 does.
pub(crate) fn with_request_id(mut error: S3Error, id: &RequestId) -> S3Error {
    error.set_request_id(id.0.to_string());
    error
}
