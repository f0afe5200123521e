//! The account and region nimbus answers as wherever an AWS-defined shape needs them: ARNs,
//! `GetBucketLocation`, the events Lambda handlers receive, the environment functions get.

/// The account id in every ARN nimbus makes up.
pub const ACCOUNT: &str = "000000000000";
/// The region nimbus answers as, and hands to functions.
pub const REGION: &str = "us-east-1";
