//! PostgreSQL values as JSON, for step outputs and comparisons. tokio-postgres reads results
//! in binary; the common types are decoded here (numeric and uuid by hand), anything else is
//! reported with the cast that makes it readable.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use postgres_types::{FromSql, Type};
use serde_json::{Map, Value};
use tokio_postgres::Row;

/// A query parameter sent as text, so the server parses it as whatever type it inferred for
/// `$n` — exactly like a literal in psql. Values never touch the SQL text.
#[derive(Debug)]
pub struct TextParam(pub Option<String>);

impl postgres_types::ToSql for TextParam {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(postgres_types::IsNull::No)
            }
            None => Ok(postgres_types::IsNull::Yes),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    fn encode_format(&self, _: &Type) -> postgres_types::Format {
        postgres_types::Format::Text
    }
    postgres_types::to_sql_checked!();
}

/// One row as a JSON object, column name -> value.
pub fn row_to_json(row: &Row) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        out.insert(col.name().to_owned(), cell(row, i, col.type_())?);
    }
    Ok(out)
}

/// One cell as JSON.
pub fn cell(row: &Row, i: usize, ty: &Type) -> Result<Value, String> {
    let name = row.columns()[i].name();
    let err = |e: tokio_postgres::Error| format!("column `{name}`: {e}");
    macro_rules! get {
        ($t:ty) => {
            row.try_get::<_, Option<$t>>(i).map_err(err)?
        };
    }
    Ok(match *ty {
        Type::BOOL => get!(bool).map(Value::from).unwrap_or(Value::Null),
        Type::INT2 => get!(i16).map(Value::from).unwrap_or(Value::Null),
        Type::INT4 => get!(i32).map(Value::from).unwrap_or(Value::Null),
        Type::INT8 => get!(i64).map(Value::from).unwrap_or(Value::Null),
        Type::OID => get!(u32).map(Value::from).unwrap_or(Value::Null),
        Type::FLOAT4 => get!(f32)
            .map(|f| Value::from(f64::from(f)))
            .unwrap_or(Value::Null),
        Type::FLOAT8 => get!(f64).map(Value::from).unwrap_or(Value::Null),
        Type::NUMERIC => get!(Numeric)
            .map(|n| numeric_json(&n.0))
            .unwrap_or(Value::Null),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            get!(String).map(Value::from).unwrap_or(Value::Null)
        }
        Type::JSON | Type::JSONB => get!(Value).unwrap_or(Value::Null),
        Type::TIMESTAMPTZ => get!(DateTime<Utc>)
            .map(|t| Value::from(crate::timestamp::rfc3339_precise(t)))
            .unwrap_or(Value::Null),
        Type::TIMESTAMP => get!(NaiveDateTime)
            .map(|t| Value::from(t.to_string()))
            .unwrap_or(Value::Null),
        Type::DATE => get!(NaiveDate)
            .map(|t| Value::from(t.to_string()))
            .unwrap_or(Value::Null),
        Type::TIME => get!(NaiveTime)
            .map(|t| Value::from(t.to_string()))
            .unwrap_or(Value::Null),
        Type::UUID => get!(Uuid).map(|u| Value::from(u.0)).unwrap_or(Value::Null),
        Type::BYTEA => get!(Vec<u8>)
            .map(|b| Value::from(format!("\\x{}", crate::hex::encode(&b))))
            .unwrap_or(Value::Null),
        ref other => {
            return Err(format!("column `{name}` has type {other}, which drillbook does not read: cast it in the query, e.g. `{name}::text`"));
        }
    })
}

/// numeric as a JSON number when no digit is lost on the way (`10.50` -> 10.5), else as its
/// exact text (`12345678901234567.89`), so comparisons stay exact.
fn numeric_json(text: &str) -> Value {
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    let normal = match text.split_once('.') {
        Some((int, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                int.to_owned()
            } else {
                format!("{int}.{frac}")
            }
        }
        None => text.to_owned(),
    };
    match normal.parse::<f64>() {
        Ok(f) if f.is_finite() && (f.to_string() == normal || format!("{f:?}") == normal) => {
            if f.fract() == 0.0 && f.abs() < 9e15 {
                Value::from(f as i64)
            } else {
                Value::from(f)
            }
        }
        _ => Value::from(text),
    }
}

/// numeric decoded from the binary wire format to its exact decimal text.
struct Numeric(String);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> Result<Numeric, Box<dyn std::error::Error + Sync + Send>> {
        let word = |i: usize| -> Result<i16, Box<dyn std::error::Error + Sync + Send>> {
            let b = raw.get(i * 2..i * 2 + 2).ok_or("truncated numeric")?;
            Ok(i16::from_be_bytes([b[0], b[1]]))
        };
        let ndigits = usize::try_from(word(0)?).map_err(|_| "bad numeric")?;
        let weight = i32::from(word(1)?);
        let sign = word(2)? as u16;
        let dscale = usize::try_from(word(3)?).map_err(|_| "bad numeric")?;
        match sign {
            0xC000 => return Ok(Numeric("NaN".into())),
            0xD000 => return Ok(Numeric("Infinity".into())),
            0xF000 => return Ok(Numeric("-Infinity".into())),
            _ => {}
        }
        let digits: Vec<i16> = (0..ndigits)
            .map(|i| word(4 + i))
            .collect::<Result<_, _>>()?;
        let mut int_part = String::new();
        let mut frac_part = String::new();
        // digit d (base 10000) sits at power weight - index
        for (idx, d) in digits.iter().enumerate() {
            let power = weight - i32::try_from(idx).unwrap_or(i32::MAX);
            let group = format!("{d:04}");
            if power >= 0 {
                int_part.push_str(&group);
            } else {
                // fill skipped zero groups between the point and this digit
                let expected = usize::try_from(-power - 1).unwrap_or(0) * 4;
                while frac_part.len() < expected {
                    frac_part.push_str("0000");
                }
                frac_part.push_str(&group);
            }
        }
        // integer groups missing at the end (weight beyond the stored digits)
        let stored_int_groups = digits.len().min(usize::try_from(weight + 1).unwrap_or(0));
        for _ in stored_int_groups..usize::try_from(weight + 1).unwrap_or(0) {
            int_part.push_str("0000");
        }
        let int_part = int_part.trim_start_matches('0');
        let int_part = if int_part.is_empty() { "0" } else { int_part };
        let mut frac: String = frac_part.chars().take(dscale).collect();
        while frac.len() < dscale {
            frac.push('0');
        }
        let sign = if sign == 0x4000 { "-" } else { "" };
        Ok(Numeric(if dscale > 0 {
            format!("{sign}{int_part}.{frac}")
        } else {
            format!("{sign}{int_part}")
        }))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

struct Uuid(String);

impl<'a> FromSql<'a> for Uuid {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Uuid, Box<dyn std::error::Error + Sync + Send>> {
        if raw.len() != 16 {
            return Err("bad uuid".into());
        }
        let h = crate::hex::encode(raw);
        Ok(Uuid(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::UUID
    }
}
