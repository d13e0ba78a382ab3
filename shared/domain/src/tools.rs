//! What the agent's tools answer, where the answer is pure.

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;

/// The current-time tool's answer for a contact's time zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalTime {
    pub timezone: String,
    /// RFC 3339 with the zone's offset.
    pub local_time: String,
    /// How the agent may say it: "Saturday, 21 November 2026, 9:05 AM".
    pub spoken: String,
    /// Monday to Friday, 09:00 to 17:00 local time.
    pub business_hours: bool,
}

pub fn local_time(now: DateTime<Utc>, zone: Tz) -> LocalTime {
    let local = now.with_timezone(&zone);
    let weekday = !matches!(local.weekday(), Weekday::Sat | Weekday::Sun);
    LocalTime {
        timezone: zone.name().to_string(),
        local_time: local.to_rfc3339(),
        spoken: local.format("%A, %-d %B %Y, %-I:%M %p").to_string(),
        business_hours: weekday && (9..17).contains(&local.hour()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_contacts_local_time_and_business_hours() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 0).unwrap();
        let ny = local_time(now, chrono_tz::America::New_York);
        assert_eq!(ny.spoken, "Monday, 23 November 2026, 9:05 AM");
        assert_eq!(ny.local_time, "2026-11-23T09:05:00-05:00");
        assert!(ny.business_hours);
        let tokyo = local_time(now, chrono_tz::Asia::Tokyo);
        assert_eq!(tokyo.spoken, "Monday, 23 November 2026, 11:05 PM");
        assert!(!tokyo.business_hours);
        assert!(
            !local_time(Utc.with_ymd_and_hms(2026, 11, 21, 15, 0, 0).unwrap(), chrono_tz::America::New_York).business_hours,
            "a Saturday"
        );
    }
}
