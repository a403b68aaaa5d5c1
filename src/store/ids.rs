//! The ids as SQLite columns: a [`JobId`] or [`ResponseId`] is stored as its text and
//! checked when read back, so a row with a malformed id is a decode error (set aside like any
//! row that does not decode), never a `String` that flows on unchecked.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Sqlite, Type};

use crate::job::{JobId, ResponseId};

macro_rules! text_id {
    ($t:ty) => {
        impl Type<Sqlite> for $t {
            fn type_info() -> SqliteTypeInfo {
                <String as Type<Sqlite>>::type_info()
            }

            fn compatible(ty: &SqliteTypeInfo) -> bool {
                <String as Type<Sqlite>>::compatible(ty)
            }
        }

        impl<'q> Encode<'q, Sqlite> for $t {
            fn encode_by_ref(
                &self,
                buf: &mut <Sqlite as sqlx::Database>::ArgumentBuffer,
            ) -> Result<IsNull, BoxDynError> {
                <String as Encode<'q, Sqlite>>::encode(self.as_str().to_owned(), buf)
            }
        }

        impl<'r> Decode<'r, Sqlite> for $t {
            fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as Decode<'r, Sqlite>>::decode(value)?;
                Ok(<$t>::parse(text)?)
            }
        }
    };
}

text_id!(JobId);
text_id!(ResponseId);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_round_trip_and_bad_ones_do_not_decode() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        let id = JobId::generate();
        let back: JobId = sqlx::query_scalar("SELECT ?")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(back, id);
        let rid = ResponseId::parse("resp_abc").unwrap();
        let back: Option<ResponseId> = sqlx::query_scalar("SELECT ?")
            .bind(Some(&rid))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(back, Some(rid));
        let bad = sqlx::query_scalar::<_, JobId>("SELECT 'job_nope'")
            .fetch_one(&pool)
            .await
            .unwrap_err();
        assert!(bad.to_string().contains("not a job id"), "{bad}");
    }
}
