//! Binary COPY, encoded here into one buffer and sent in large writes. `postgres`'s
//! `BinaryCopyInWriter` enters its async runtime for every row, which cost the ingester more than
//! encoding the row itself; this writes the same format (PostgreSQL's binary COPY: a header, per
//! row a field count and length-prefixed values, a trailer).

use crate::StoreError;
use postgres::types::private::BytesMut;
use postgres::types::{IsNull, ToSql, Type};
use std::io::Write;

/// Rows are sent once this many bytes are buffered.
const FLUSH_BYTES: usize = 256 * 1024;

pub(crate) struct BinaryCopy<'a> {
    sink: postgres::CopyInWriter<'a>,
    buf: BytesMut,
    types: &'a [Type],
}

impl<'a> BinaryCopy<'a> {
    /// Starts `COPY ... FROM STDIN BINARY` with `sql`; rows must have `types`, in order.
    pub(crate) fn start(
        tx: &'a mut postgres::Transaction<'_>,
        sql: &str,
        types: &'a [Type],
    ) -> Result<BinaryCopy<'a>, StoreError> {
        let sink = tx.copy_in(sql)?;
        let mut buf = BytesMut::with_capacity(FLUSH_BYTES + 4096);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        Ok(BinaryCopy { sink, buf, types })
    }

    pub(crate) fn write(&mut self, values: &[&(dyn ToSql + Sync)]) -> Result<(), StoreError> {
        if values.len() != self.types.len() {
            return Err(StoreError::Invariant(format!(
                "a COPY row of {} values for {} columns",
                values.len(),
                self.types.len()
            )));
        }
        self.buf.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for (v, ty) in values.iter().zip(self.types) {
            let at = self.buf.len();
            self.buf.extend_from_slice(&[0; 4]);
            let is_null = v
                .to_sql_checked(ty, &mut self.buf)
                .map_err(|e| StoreError::Invariant(format!("a value does not encode as {ty}: {e}")))?;
            let len = match is_null {
                IsNull::Yes => -1i32,
                IsNull::No => i32::try_from(self.buf.len() - at - 4)
                    .map_err(|_| StoreError::Invariant("a COPY value over 2 GiB".into()))?,
            };
            self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        if self.buf.len() >= FLUSH_BYTES {
            self.sink.write_all(&self.buf).map_err(io_error)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Sends the trailer and ends the COPY; returns the rows PostgreSQL took.
    pub(crate) fn finish(mut self) -> Result<u64, StoreError> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.sink.write_all(&self.buf).map_err(io_error)?;
        Ok(self.sink.finish()?)
    }
}

/// A failed write to the COPY stream is a database error (the connection or the server refused
/// the data); `postgres` reports it as an io::Error wrapping its own.
fn io_error(e: std::io::Error) -> StoreError {
    match e.into_inner().map(|inner| inner.downcast::<postgres::Error>()) {
        Some(Ok(pg)) => StoreError::Db(*pg),
        Some(Err(other)) => StoreError::Invariant(format!("writing COPY data: {other}")),
        None => StoreError::Invariant("writing COPY data failed".into()),
    }
}
