//! Protocol constants (MariaDB's `mysql_com.h`).

/// Command bytes (first byte of a command packet).
pub mod cmd {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const SHUTDOWN: u8 = 0x08;
    pub const STATISTICS: u8 = 0x09;
    pub const DEBUG: u8 = 0x0d;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const RESET_CONNECTION: u8 = 0x1f;
}

/// First bytes of server packets outside result-set rows.
pub mod header {
    /// OK packet.
    pub const OK: u8 = 0x00;
    /// ERR packet.
    pub const ERR: u8 = 0xff;
    /// EOF packet; during authentication, an auth switch request.
    pub const EOF: u8 = 0xfe;
}

/// Capability flags.
pub mod cap {
    pub const LONG_PASSWORD: u32 = 1;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const COMPRESS: u32 = 1 << 5;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const SSL: u32 = 1 << 11;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_DATA: u32 = 1 << 21;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    /// MariaDB: the greeting has no 4.1 capability bit 0 (`CLIENT_MYSQL`) and carries the
    /// extended capabilities in the reserved bytes.
    pub const MYSQL: u32 = 1;
}

/// MariaDB extended capabilities (the greeting's and handshake response's extra 32 bits).
pub mod mariadb_cap {
    /// `MARIADB_CLIENT_CACHE_METADATA`: prepared statements' metadata is sent only when it
    /// changed (a "metadata follows" byte after each result set's column count).
    pub const CACHE_METADATA: u32 = 1 << 4;
}

/// Server status flags (in OK and EOF packets).
pub mod status {
    pub const IN_TRANS: u16 = 0x0001;
    pub const AUTOCOMMIT: u16 = 0x0002;
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const LAST_ROW_SENT: u16 = 0x0080;
    pub const NO_BACKSLASH_ESCAPES: u16 = 0x0200;
    pub const IN_TRANS_READONLY: u16 = 0x2000;
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
}

/// Client-side error codes (what libmysqlclient reports) and server codes we generate.
pub mod errcode {
    /// `ER_CONNECTION_KILLED` (SQLSTATE 08S01, a connection failure): what the router sends
    /// when it refuses a login for a backend's sake (MaxScale uses it for such errors too). Not the client codes
    /// 2003/2013 (`CR_*`, 2000-2099): libmariadb reads an ERR packet carrying one of those as
    /// "2027 Received malformed packet" and drops the message.
    pub const ER_CONNECTION_KILLED: u16 = 1927;
    /// `ER_CON_COUNT_ERROR`: too many connections.
    pub const ER_CON_COUNT_ERROR: u16 = 1040;
    /// `ER_NET_PACKET_TOO_LARGE`.
    pub const ER_NET_PACKET_TOO_LARGE: u16 = 1153;
    /// `ER_UNKNOWN_COM_ERROR`.
    pub const ER_UNKNOWN_COM_ERROR: u16 = 1047;
    /// `ER_NOT_SUPPORTED_YET`.
    pub const ER_NOT_SUPPORTED_YET: u16 = 1235;
}
