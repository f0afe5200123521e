//! The auth service's mail: confirmation and password-recovery messages over SMTP (lettre),
//! each carrying a link and a six-digit code, as GoTrue's templates do.

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Sends the auth service's messages through one SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mailer(..)")
    }
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl Mailer {
    /// A mailer for `smtp://host:port` (plain; `?tls=required` for STARTTLS) or
    /// `smtps://user:password@host:port` (TLS), as lettre reads such URLs.
    pub fn from_url(url: &str) -> Result<Mailer, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("{url:?} is not an SMTP URL nimbus can use: {e}"))?
            .build();
        Ok(Mailer { transport })
    }

    pub async fn send(&self, mail: &Mail) -> Result<(), String> {
        let message = Message::builder()
            .from(
                mail.from
                    .parse()
                    .map_err(|e| format!("the sender {:?}: {e}", mail.from))?,
            )
            .to(mail
                .to
                .parse()
                .map_err(|e| format!("the recipient {:?}: {e}", mail.to))?)
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| format!("building the message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("sending mail to {:?}: {e}", mail.to))
    }
}

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    Confirmation,
    Recovery,
}

/// The message of `template` with its link and code (lines end in CRLF, as MIME text's do).
pub fn compose(template: Template, from: &str, to: &str, link: &str, code: &str) -> Mail {
    let (subject, intro) = match template {
        Template::Confirmation => (
            "Confirm Your Signup",
            "Follow this link to confirm your e-mail address:",
        ),
        Template::Recovery => (
            "Reset Your Password",
            "Follow this link to reset the password of your account:",
        ),
    };
    Mail {
        from: from.to_owned(),
        to: to.to_owned(),
        subject: subject.to_owned(),
        body: format!(
            "{intro}\r\n\r\n{link}\r\n\r\nOr enter this code: {code}\r\n\r\nIf you did not ask for this, ignore this message.\r\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_carry_the_link_and_the_code() {
        let mail = compose(
            Template::Recovery,
            "Todo <noreply@todo.test>",
            "ada@example.com",
            "http://x/verify?token=abc&type=recovery",
            "123456",
        );
        assert_eq!(mail.subject, "Reset Your Password");
        assert!(
            mail.body
                .contains("http://x/verify?token=abc&type=recovery")
        );
        assert!(mail.body.contains("123456"));
        assert!(Mailer::from_url("smtp://127.0.0.1:2525").is_ok());
        assert!(Mailer::from_url("http://example.com").is_err());
    }
}
