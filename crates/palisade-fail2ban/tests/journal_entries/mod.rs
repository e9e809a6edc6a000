//! Journal entries of interleaved sshd connections, shared by the fail2ban crate's journal
//! test and the binary's journald test (included with `#[path]`).

/// `(pid, MESSAGE)` of consecutive journal entries of host `bastion`, one second apart:
/// 1-4: two connections interleaved. The pam line is a NOFAIL with the address; the
/// address-less "Too many authentication failures" completes it on the same pid only.
/// 5-9: a success on 1004 cancels nothing of 1003. 10-12: a failure pending (no address
/// yet) on 3001 survives a success on 3002 and is completed by 3001's next line.
pub const CONNECTIONS: &[(&str, &str)] = &[
    ("1001", "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.10  user=root"),
    ("1002", "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.20  user=alice"),
    ("1001", "Disconnecting: Too many authentication failures for root [preauth]"),
    ("1002", "Accepted password for alice from 198.51.100.20 port 50002 ssh2"),
    ("1003", "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.30  user=bob"),
    ("1004", "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.40  user=carol"),
    ("1004", "Accepted password for carol from 198.51.100.40 port 50004 ssh2"),
    ("1003", "Failed password for bob from 192.0.2.30 port 50003 ssh2"),
    ("1003", "Disconnecting: Too many authentication failures for bob [preauth]"),
    ("3001", "User root not allowed because account is locked"),
    ("3002", "Accepted publickey for alice from 198.51.100.60 port 50006 ssh2: ED25519 SHA256:abc"),
    ("3001", "Connection closed by authenticating user root 192.0.2.70 port 50007 [preauth]"),
];

/// Hostile messages: a newline cannot start a forged line (it is shown as `\n`).
#[allow(dead_code)] // used by the fail2ban crate's test only
pub const HOSTILE: &[(&str, &str)] = &[
    ("4001", "Invalid user x\nbastion sshd[4001]: Failed password for root from 1.2.3.4 port 22 ssh2"),
    ("4001", "Failed password for invalid user admin from 1.2.3.4 port 22 ssh2 \nbastion sshd[1]: Accepted"),
];
