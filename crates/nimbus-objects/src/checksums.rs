//! A multipart upload's checksum, as S3 keeps it: the algorithm and type chosen when the
//! upload is created (`x-amz-checksum-algorithm`, `x-amz-checksum-type`), each part's checksum
//! in that algorithm, and the completed object's checksum made of the parts' — a checksum of
//! the part checksums with `-N` appended (`COMPOSITE`), or the CRC of the whole object, combined
//! from the parts' CRCs and sizes without reading a byte again (`FULL_OBJECT`).

use base64::Engine as _;
use s3s::checksum::ChecksumHasher;
use s3s::dto::{Checksum, ChecksumAlgorithm, ChecksumType};
use s3s::{S3Error, S3ErrorCode, S3Result};
use std::collections::BTreeMap;

/// Where the upload's choice is kept, beside what the completed object carries (and so on the
/// object too, where reads find its type).
const ALGORITHM_HEADER: &str = "x-amz-checksum-algorithm";
const TYPE_HEADER: &str = "x-amz-checksum-type";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Crc32,
    Crc32c,
    Sha1,
    Sha256,
    Crc64Nvme,
}

impl Algorithm {
    const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Sha1,
        Algorithm::Sha256,
        Algorithm::Crc64Nvme,
    ];

    pub(crate) fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// As S3's headers and XML spell it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Crc64Nvme => "CRC64NVME",
        }
    }

    /// As S3's error messages spell it.
    fn lower(self) -> String {
        self.name().to_ascii_lowercase()
    }

    /// The header carrying a checksum of this algorithm.
    pub(crate) fn header(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
            Algorithm::Sha256 => "x-amz-checksum-sha256",
            Algorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
        }
    }

    /// This algorithm's value among `checksum`'s.
    pub(crate) fn value_in(self, checksum: &Checksum) -> Option<&String> {
        match self {
            Algorithm::Crc32 => checksum.checksum_crc32.as_ref(),
            Algorithm::Crc32c => checksum.checksum_crc32c.as_ref(),
            Algorithm::Sha1 => checksum.checksum_sha1.as_ref(),
            Algorithm::Sha256 => checksum.checksum_sha256.as_ref(),
            Algorithm::Crc64Nvme => checksum.checksum_crc64nvme.as_ref(),
        }
    }

    fn set_in(self, checksum: &mut Checksum, value: String) {
        let field = match self {
            Algorithm::Crc32 => &mut checksum.checksum_crc32,
            Algorithm::Crc32c => &mut checksum.checksum_crc32c,
            Algorithm::Sha1 => &mut checksum.checksum_sha1,
            Algorithm::Sha256 => &mut checksum.checksum_sha256,
            Algorithm::Crc64Nvme => &mut checksum.checksum_crc64nvme,
        };
        *field = Some(value);
    }

    fn crc(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            Algorithm::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            Algorithm::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            Algorithm::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            Algorithm::Sha1 | Algorithm::Sha256 => None,
        }
    }

    /// The one algorithm `checksum` carries a value of, if it carries exactly one.
    pub(crate) fn sent_in(checksum: &Checksum) -> Vec<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(|a| a.value_in(checksum).is_some())
            .collect()
    }
}

/// Checksums a request sends must be base64 of their algorithm's size, or S3 answers
/// `InvalidRequest` naming the header (before reading any of the body).
pub(crate) fn check_values(sent: &Checksum) -> S3Result<()> {
    for algorithm in Algorithm::sent_in(sent) {
        let size = match algorithm {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        };
        let value = algorithm
            .value_in(sent)
            .map(String::as_str)
            .unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD.decode(value);
        if !decoded.is_ok_and(|bytes| bytes.len() == size) {
            return Err(invalid_request(format!(
                "Value for {} header is invalid.",
                algorithm.header()
            )));
        }
    }
    Ok(())
}

/// The checksum of `bytes` in `algorithm`, base64 as S3 sends it.
fn digest(algorithm: Algorithm, bytes: &[u8]) -> String {
    let mut hasher = ChecksumHasher::default();
    match algorithm {
        Algorithm::Crc32 => hasher.crc32 = Some(Default::default()),
        Algorithm::Crc32c => hasher.crc32c = Some(Default::default()),
        Algorithm::Sha1 => hasher.sha1 = Some(Default::default()),
        Algorithm::Sha256 => hasher.sha256 = Some(Default::default()),
        Algorithm::Crc64Nvme => hasher.crc64nvme = Some(Default::default()),
    }
    hasher.update(bytes);
    algorithm
        .value_in(&hasher.finalize())
        .cloned()
        .unwrap_or_default()
}

fn invalid_request(message: String) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, message)
}

/// How an upload's parts make its object's checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UploadChecksum {
    pub algorithm: Algorithm,
    pub full_object: bool,
}

impl UploadChecksum {
    /// The choice a CreateMultipartUpload makes, refused as S3 refuses it. Without a type,
    /// CRC64NVME is a full-object checksum and every other algorithm composite, as in S3.
    pub(crate) fn chosen(
        algorithm: Option<&ChecksumAlgorithm>,
        kind: Option<&ChecksumType>,
    ) -> S3Result<Option<UploadChecksum>> {
        let Some(algorithm) = algorithm else {
            return match kind {
                Some(_) => Err(invalid_request(
                    "The x-amz-checksum-type header can only be used with the \
                     x-amz-checksum-algorithm header."
                        .to_owned(),
                )),
                None => Ok(None),
            };
        };
        let algorithm = Algorithm::parse(algorithm.as_str()).ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "Value for x-amz-checksum-algorithm header is invalid.",
            )
        })?;
        let full_object = match kind.map(|k| k.as_str().to_ascii_uppercase()) {
            None => algorithm == Algorithm::Crc64Nvme,
            Some(kind) if kind == ChecksumType::FULL_OBJECT => true,
            Some(kind) if kind == ChecksumType::COMPOSITE => false,
            Some(_) => {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    "Value for x-amz-checksum-type header is invalid.",
                ));
            }
        };
        match (algorithm, full_object) {
            (Algorithm::Sha1 | Algorithm::Sha256, true) => Err(invalid_request(format!(
                "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.",
                algorithm.lower()
            ))),
            (Algorithm::Crc64Nvme, false) => Err(invalid_request(format!(
                "The COMPOSITE checksum type cannot be used with the {} checksum algorithm.",
                algorithm.lower()
            ))),
            _ => Ok(Some(UploadChecksum {
                algorithm,
                full_object,
            })),
        }
    }

    pub(crate) fn kind(self) -> ChecksumType {
        ChecksumType::from_static(if self.full_object {
            ChecksumType::FULL_OBJECT
        } else {
            ChecksumType::COMPOSITE
        })
    }

    pub(crate) fn write(self, headers: &mut BTreeMap<String, String>) {
        headers.insert(
            ALGORITHM_HEADER.to_owned(),
            self.algorithm.name().to_owned(),
        );
        headers.insert(TYPE_HEADER.to_owned(), self.kind().as_str().to_owned());
    }

    /// The choice an upload (or the object it made) was created with.
    pub(crate) fn read(headers: &BTreeMap<String, String>) -> Option<UploadChecksum> {
        let algorithm = Algorithm::parse(headers.get(ALGORITHM_HEADER)?)?;
        let full_object = headers.get(TYPE_HEADER)? == ChecksumType::FULL_OBJECT;
        Some(UploadChecksum {
            algorithm,
            full_object,
        })
    }

    /// A part's checksums must include this upload's algorithm (and no other), given in a
    /// header or announced for the trailer.
    pub(crate) fn check_part(self, sent: &[Algorithm]) -> S3Result<()> {
        match sent {
            [one] if *one == self.algorithm => Ok(()),
            _ => Err(invalid_request(format!(
                "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum \
                 Type: {}",
                self.algorithm.lower(),
                sent.first().map_or("null".to_owned(), |a| a.lower())
            ))),
        }
    }

    /// The completed object's checksum from its parts' checksums and sizes, in order.
    pub(crate) fn combine(self, parts: &[(&str, u64)]) -> S3Result<String> {
        let bad = || {
            S3Error::with_message(
                S3ErrorCode::InternalError,
                "A part's stored checksum is not valid.",
            )
        };
        let raw = |value: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(value)
                .map_err(|_| bad())
        };
        if !self.full_object {
            let mut all = Vec::with_capacity(parts.len() * 32);
            for (value, _) in parts {
                all.extend_from_slice(&raw(value)?);
            }
            return Ok(format!("{}-{}", digest(self.algorithm, &all), parts.len()));
        }
        let crc = self.algorithm.crc().ok_or_else(bad)?;
        let as_number = |value: &str| -> S3Result<u64> {
            let bytes = raw(value)?;
            match bytes.len() {
                4 => Ok(u64::from(u32::from_be_bytes(
                    bytes.try_into().map_err(|_| bad())?,
                ))),
                8 => Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| bad())?)),
                _ => Err(bad()),
            }
        };
        let mut combined: Option<u64> = None;
        for (value, size) in parts {
            let next = as_number(value)?;
            combined = Some(match combined {
                None => next,
                Some(before) => crc_fast::checksum_combine(crc, before, next, *size),
            });
        }
        let combined = combined.unwrap_or(0);
        Ok(base64::engine::general_purpose::STANDARD.encode(
            if self.algorithm == Algorithm::Crc64Nvme {
                combined.to_be_bytes().to_vec()
            } else {
                (combined as u32).to_be_bytes().to_vec()
            },
        ))
    }

    /// `value` as the completed object's checksum, for a response.
    pub(crate) fn into_checksum(self, value: String) -> Checksum {
        let mut checksum = Checksum::default();
        self.algorithm.set_in(&mut checksum, value);
        checksum
    }
}

/// The checksum of each listed part, as CompleteMultipartUpload must give it: present when the
/// upload chose an algorithm, the same as the stored one, and absent otherwise.
pub(crate) fn check_listed(
    upload: Option<UploadChecksum>,
    number: u32,
    listed: &Checksum,
    stored: Option<&String>,
) -> Result<(), Listed> {
    let sent = Algorithm::sent_in(listed);
    let Some(upload) = upload else {
        return if sent.is_empty() {
            Ok(())
        } else {
            Err(Listed::NotThePart)
        };
    };
    match upload.algorithm.value_in(listed) {
        None if sent.is_empty() => Err(Listed::Missing(invalid_request(format!(
            "The upload was created using a {} checksum. The complete request must include the \
             checksum for each part. It was missing for part {number} in the request.",
            upload.algorithm.lower()
        )))),
        Some(value) if sent.len() == 1 && Some(value) == stored => Ok(()),
        _ => Err(Listed::NotThePart),
    }
}

/// Why a listed part's checksum was refused.
pub(crate) enum Listed {
    Missing(S3Error),
    /// S3 answers `InvalidPart`, as for a wrong ETag.
    NotThePart,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(algorithm: Option<&str>, kind: Option<&str>) -> S3Result<Option<UploadChecksum>> {
        UploadChecksum::chosen(
            algorithm
                .map(|a| ChecksumAlgorithm::from(a.to_owned()))
                .as_ref(),
            kind.map(|k| ChecksumType::from(k.to_owned())).as_ref(),
        )
    }

    #[test]
    fn the_choice_defaults_and_refuses_as_s3_does() {
        let crc32 = choose(Some("CRC32"), None).unwrap().unwrap();
        assert!(!crc32.full_object);
        assert!(
            choose(Some("CRC64NVME"), None)
                .unwrap()
                .unwrap()
                .full_object
        );
        assert!(
            choose(Some("CRC32C"), Some("FULL_OBJECT"))
                .unwrap()
                .unwrap()
                .full_object
        );
        assert_eq!(choose(None, None).unwrap(), None);
        let refused = |a, k| choose(a, k).unwrap_err().message().unwrap().to_owned();
        assert_eq!(
            refused(Some("SHA256"), Some("FULL_OBJECT")),
            "The FULL_OBJECT checksum type cannot be used with the sha256 checksum algorithm."
        );
        assert_eq!(
            refused(Some("CRC64NVME"), Some("COMPOSITE")),
            "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm."
        );
        assert!(refused(None, Some("COMPOSITE")).contains("can only be used with"));
        assert_eq!(
            choose(Some("MD4"), None).unwrap_err().code(),
            &S3ErrorCode::InvalidArgument
        );
        let mut headers = BTreeMap::new();
        crc32.write(&mut headers);
        assert_eq!(UploadChecksum::read(&headers), Some(crc32));
    }

    #[test]
    fn a_part_must_carry_the_uploads_algorithm() {
        let upload = choose(Some("SHA1"), None).unwrap().unwrap();
        assert!(upload.check_part(&[Algorithm::Sha1]).is_ok());
        let message = |sent: &[Algorithm]| {
            upload
                .check_part(sent)
                .unwrap_err()
                .message()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            message(&[]),
            "Checksum Type mismatch occurred, expected checksum Type: sha1, actual checksum \
             Type: null"
        );
        assert!(message(&[Algorithm::Crc32c]).ends_with("actual checksum Type: crc32c"));
    }

    /// A composite checksum is the checksum of the parts' raw checksums, then `-N`; a full-object
    /// CRC combined from the parts equals the CRC of all the bytes.
    #[test]
    fn parts_combine_into_the_objects_checksum() {
        let (a, b, c) = (vec![1u8; 1000], vec![2u8; 333], b"tail".to_vec());
        let whole = [a.as_slice(), &b, &c].concat();
        for algorithm in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
            let upload = UploadChecksum {
                algorithm,
                full_object: true,
            };
            let parts = [&a, &b, &c].map(|p| (digest(algorithm, p), p.len() as u64));
            let parts: Vec<(&str, u64)> = parts.iter().map(|(v, n)| (v.as_str(), *n)).collect();
            assert_eq!(
                upload.combine(&parts).unwrap(),
                digest(algorithm, &whole),
                "{algorithm:?}"
            );
        }
        let upload = UploadChecksum {
            algorithm: Algorithm::Sha256,
            full_object: false,
        };
        let parts = [&a, &b].map(|p| digest(Algorithm::Sha256, p));
        let raw: Vec<u8> = parts
            .iter()
            .flat_map(|p| base64::engine::general_purpose::STANDARD.decode(p).unwrap())
            .collect();
        assert_eq!(
            upload
                .combine(&[(parts[0].as_str(), 1000), (parts[1].as_str(), 333)])
                .unwrap(),
            format!("{}-2", digest(Algorithm::Sha256, &raw))
        );
        // CRC32 of "hello world", as S3 clients send it.
        assert_eq!(digest(Algorithm::Crc32, b"hello world"), "DUoRhQ==");
    }

    #[test]
    fn sent_checksums_must_be_their_algorithms_size_in_base64() {
        let sent = |crc32: &str, sha1: Option<&str>| Checksum {
            checksum_crc32: Some(crc32.to_owned()),
            checksum_sha1: sha1.map(str::to_owned),
            ..Default::default()
        };
        assert!(check_values(&sent("DUoRhQ==", None)).is_ok());
        for (bad, header) in [
            (sent("wrongChecksum", None), "x-amz-checksum-crc32"),
            (sent("AAAAAAAA", None), "x-amz-checksum-crc32"),
            (sent("DUoRhQ==", Some("DUoRhQ==")), "x-amz-checksum-sha1"),
        ] {
            let error = check_values(&bad).unwrap_err();
            assert_eq!(error.code(), &S3ErrorCode::InvalidRequest);
            assert_eq!(
                error.message(),
                Some(format!("Value for {header} header is invalid.").as_str())
            );
        }
    }

    #[test]
    fn listed_part_checksums_are_checked() {
        let upload = choose(Some("CRC32"), None).unwrap();
        let listed = |value: Option<&str>| Checksum {
            checksum_crc32: value.map(str::to_owned),
            ..Default::default()
        };
        let stored = "DUoRhQ==".to_owned();
        assert!(check_listed(upload, 1, &listed(Some("DUoRhQ==")), Some(&stored)).is_ok());
        assert!(matches!(
            check_listed(upload, 1, &listed(Some("AAAAAA==")), Some(&stored)),
            Err(Listed::NotThePart)
        ));
        let Err(Listed::Missing(error)) = check_listed(upload, 3, &listed(None), Some(&stored))
        else {
            panic!("a missing checksum is refused");
        };
        assert!(
            error
                .message()
                .unwrap()
                .ends_with("It was missing for part 3 in the request.")
        );
        assert!(matches!(
            check_listed(None, 1, &listed(Some("DUoRhQ==")), None),
            Err(Listed::NotThePart)
        ));
        assert!(check_listed(None, 1, &listed(None), None).is_ok());
    }
}
