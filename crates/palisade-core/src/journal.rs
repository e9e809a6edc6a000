//! The journal fields that travel with a journald message.

/// Fields of one journal entry besides `MESSAGE`, as `journalctl` gave them (values that are
/// not UTF-8 are decoded lossily), borrowed for the duration of one line.
///
/// Most filters look only at the message; these are for the few consumers that need the
/// entry's metadata, such as fail2ban filter files, which expect journald messages behind a
/// syslog-like `host ident[pid]:` prefix built from them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalFields<'a> {
    /// `_HOSTNAME`.
    pub hostname: Option<&'a str>,
    /// `SYSLOG_IDENTIFIER` (chosen by the sender).
    pub syslog_identifier: Option<&'a str>,
    /// `_COMM` (the process name, recorded by journald).
    pub comm: Option<&'a str>,
    /// `SYSLOG_PID` (chosen by the sender), as written in the entry.
    pub syslog_pid: Option<&'a str>,
    /// `_PID` (recorded by journald), as written in the entry.
    pub pid: Option<&'a str>,
    /// `_SOURCE_MONOTONIC_TIMESTAMP`, in microseconds (kernel messages).
    pub source_monotonic: Option<u64>,
    /// `__MONOTONIC_TIMESTAMP`, in microseconds since boot.
    pub monotonic: Option<u64>,
}

impl JournalFields<'_> {
    /// The program: `SYSLOG_IDENTIFIER`, else `_COMM` (an empty value counts as absent).
    pub fn ident(&self) -> Option<&str> {
        non_empty(self.syslog_identifier).or(non_empty(self.comm))
    }

    /// The process id: `_PID` (recorded by journald, so not forgeable by the sender), else
    /// `SYSLOG_PID`; `None` when neither is a number.
    pub fn pid(&self) -> Option<u32> {
        let num = |s: Option<&str>| s.and_then(|s| s.trim().parse::<u32>().ok());
        num(self.pid).or(num(self.syslog_pid))
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ident_and_pid_fallbacks() {
        let f = JournalFields {
            syslog_identifier: Some(""),
            comm: Some("sshd-session"),
            syslog_pid: Some("7"),
            pid: Some(" 1234 "),
            ..JournalFields::default()
        };
        assert_eq!(f.ident(), Some("sshd-session"));
        assert_eq!(f.pid(), Some(1234));
        let f = JournalFields {
            syslog_identifier: Some("sshd"),
            comm: Some("x"),
            syslog_pid: Some("7"),
            pid: Some("junk"),
            ..JournalFields::default()
        };
        assert_eq!(f.ident(), Some("sshd"));
        assert_eq!(f.pid(), Some(7));
        assert_eq!(JournalFields::default().ident(), None);
        assert_eq!(JournalFields::default().pid(), None);
    }
}
