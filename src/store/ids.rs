//! The ids as SQLite columns: a [`JobId`] or [`ResponseId`] is stored as its text and
//! checked when read back, so a row with a malformed id is a decode error (set aside like any
//! row that does not decode), never a `String` that flows on unchecked.

use sqlx::any::{AnyTypeInfo, AnyValueRef};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Any, Decode, Encode, Type};

use crate::job::{JobId, ResponseId};

macro_rules! text_id {
    ($t:ty) => {
        impl Type<Any> for $t {
            fn type_info() -> AnyTypeInfo {
                <String as Type<Any>>::type_info()
            }

            fn compatible(ty: &AnyTypeInfo) -> bool {
                <String as Type<Any>>::compatible(ty)
            }
        }

        impl<'q> Encode<'q, Any> for $t {
            fn encode_by_ref(
                &self,
                buf: &mut <Any as sqlx::Database>::ArgumentBuffer,
            ) -> Result<IsNull, BoxDynError> {
                <String as Encode<'q, Any>>::encode(self.as_str().to_owned(), buf)
            }
        }

        impl<'r> Decode<'r, Any> for $t {
            fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as Decode<'r, Any>>::decode(value)?;
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
    use crate::store::sql;

    #[tokio::test]
    async fn ids_round_trip_and_bad_ones_do_not_decode() {
        crate::store::install_drivers();
        let pool = sqlx::AnyPool::connect("sqlite::memory:").await.unwrap();
        let id = JobId::generate();
        let back: JobId = sql::query_scalar("SELECT ?")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(back, id);
        let rid = ResponseId::parse("resp_abc").unwrap();
        let back: Option<ResponseId> = sql::query_scalar("SELECT ?")
            .bind(Some(&rid))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(back, Some(rid));
        let bad = sql::query_scalar::<JobId>("SELECT 'job_nope'")
            .fetch_one(&pool)
            .await
            .unwrap_err();
        assert!(bad.to_string().contains("not a job id"), "{bad}");
    }

    /// The ledger refuses to store an id its readers could not decode (a hand edit), naming
    /// the rule; well-formed ids go through.
    #[tokio::test]
    async fn the_ledger_refuses_malformed_ids() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ids.db").display());
        let store = crate::store::Store::connect(&url).await.unwrap();
        let spec =
            crate::job::JobSpec::from_value(serde_json::json!({"model": "m", "input": "i"}), "n")
                .unwrap();
        let id = JobId::generate();
        store
            .insert_job(crate::store::NewJob {
                id: id.clone(),
                spec_hash: crate::orchestrator::spec_hash(&spec),
                spec,
                now: 1,
                deadline_at: None,
                origin: "test".into(),
            })
            .await
            .unwrap();
        for (sql, bad) in [
            (
                "UPDATE jobs SET id = ? WHERE id = ?",
                "job_01OLDAAAAAAAAAAAAAAAAAAAAA",
            ),
            ("UPDATE jobs SET id = ? WHERE id = ?", "job_1"),
            ("UPDATE jobs SET response_id = ? WHERE id = ?", "resp/1"),
            ("UPDATE jobs SET retry_of = ? WHERE id = ?", "nope"),
            ("UPDATE job_events SET job_id = ? WHERE job_id = ?", "job_x"),
        ] {
            let err = sql::query(sql)
                .bind(bad)
                .bind(&id)
                .execute(&store.pool)
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("respool: a job id"),
                "{sql} {bad}: {err}"
            );
        }
        sql::query("UPDATE jobs SET response_id = ? WHERE id = ?")
            .bind("resp_0123-abc_DEF")
            .bind(&id)
            .execute(&store.pool)
            .await
            .unwrap();
        let row = store.get_job(&id).await.unwrap().unwrap();
        assert_eq!(row.response_id.unwrap(), "resp_0123-abc_DEF");
        store.close().await;
    }
}
