//! `COPY … FROM STDIN (FORMAT binary)` written straight into large buffers.
//!
//! tokio-postgres' `BinaryCopyInWriter` encodes each value through `ToSql` and hands the connection a message
//! every 4 KiB; for a first load (1.5M rows of events, state and outbox) that framing cost more CPU than the
//! encoding itself. [`CopyIn`] appends fields to one buffer and sends it in chunks of `CHUNK` (256 KiB), so the
//! server parses one chunk while the next is encoded.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::{CopyInSink, Transaction};
use uuid::Uuid;

/// Bytes encoded before they are handed to the connection.
const CHUNK: usize = 256 * 1024;

/// PostgreSQL's OID of `text`, for the elements of `text[]`.
const TEXT_OID: i32 = 25;

/// One binary `COPY FROM STDIN` in progress.
pub struct CopyIn {
    sink: std::pin::Pin<Box<CopyInSink<Bytes>>>,
    buf: BytesMut,
    fields: i16,
}

impl CopyIn {
    /// Starts `statement` (a `COPY … FROM STDIN (FORMAT binary)` whose column list has `fields` columns).
    pub async fn start(
        tx: &Transaction<'_>,
        statement: &str,
        fields: i16,
    ) -> Result<Self, tokio_postgres::Error> {
        let sink = Box::pin(tx.copy_in(statement).await?);
        let mut buf = BytesMut::with_capacity(CHUNK + 4096);
        buf.put_slice(b"PGCOPY\n\xff\r\n\0");
        buf.put_i32(0); // flags
        buf.put_i32(0); // header extension length
        Ok(CopyIn { sink, buf, fields })
    }

    /// Begins a row: exactly `fields` values must follow.
    pub async fn row(&mut self) -> Result<(), tokio_postgres::Error> {
        if self.buf.len() >= CHUNK {
            let chunk = self.buf.split().freeze();
            self.sink.send(chunk).await?;
        }
        self.buf.put_i16(self.fields);
        Ok(())
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.put_i32(8);
        self.buf.put_i64(v);
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.put_i32(4);
        self.buf.put_i32(v);
    }

    pub fn uuid(&mut self, v: &Uuid) {
        self.buf.put_i32(16);
        self.buf.put_slice(v.as_bytes());
    }

    /// A `text` (valid UTF-8, which `&str` guarantees) or `bytea` value.
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.put_i32(len_i32(v.len()));
        self.buf.put_slice(v);
    }

    pub fn text(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    /// A one-dimensional `text[]` without NULLs.
    pub fn text_array(&mut self, values: &[String]) {
        let body: usize = 20 + values.iter().map(|v| 4 + v.len()).sum::<usize>();
        self.buf.put_i32(len_i32(body));
        self.buf.put_i32(1); // dimensions
        self.buf.put_i32(0); // no NULLs
        self.buf.put_i32(TEXT_OID);
        self.buf.put_i32(len_i32(values.len()));
        self.buf.put_i32(1); // lower bound
        for v in values {
            self.bytes(v.as_bytes());
        }
    }

    /// Sends the rest and ends the `COPY`; answers the rows the server took.
    pub async fn finish(mut self) -> Result<u64, tokio_postgres::Error> {
        self.buf.put_i16(-1);
        let chunk = self.buf.split().freeze();
        self.sink.send(chunk).await?;
        self.sink.as_mut().finish().await
    }
}

/// A field length: PostgreSQL's limit (1 GB) is far below `i32::MAX`; a row that long was refused by the parser.
fn len_i32(n: usize) -> i32 {
    i32::try_from(n).expect("a COPY field shorter than 2 GiB")
}
