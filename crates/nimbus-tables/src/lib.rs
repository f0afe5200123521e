//! Tables that speak DynamoDB: attribute values and DynamoDB's numbers ([`value`],
//! [`number`]), the expression language parsed once into an AST ([`expr`]), over the storage
//! of [`nimbus_store::tables`]. The JSON wire protocol sits apart from the storage: the store
//! sees keys and item bytes, never a request.

pub mod admin;
pub mod expr;
pub mod maintenance;
pub mod number;
pub mod ops;
pub mod provision;
pub mod request;
pub mod streams;
pub mod table;
pub mod value;

pub use number::{Number, NumberError};
pub use ops::{Caller, Dynamo, DynamoService};
pub use streams::StreamsService;
pub use value::{Item, Type, Value};
