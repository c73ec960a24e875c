//! `series_detail`: which series of an incomplete study the destination lacks or holds short.
//!
//! For each incomplete study, then each held study whose completeness the instance counts
//! cannot tell (a side that reports none, as dcmqrscp), oldest first and at most
//! `max_series_detail_studies` in all: one SERIES-level C-FIND per side, on the associations
//! the check already holds. A study of unknown completeness with a series missing or short is
//! incomplete. Series are matched by SeriesInstanceUID: one the source lists and the
//! destination does not is *missing*; one both list with a NumberOfSeriesRelatedInstances, the
//! destination's lower, is *incomplete*. A study's series are *unknown*, never guessed, when
//! either answer is not complete, a match carries no SeriesInstanceUID or no or another
//! study's UID (an archive that does not answer SERIES level, or ignores the key), or either
//! side lists no series. Series detail never fails the probe: the verdict on studies stands
//! whatever it finds.
//!
//! [`compare_series`] is the rule, pure; [`detail`] runs the queries.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::compare::Study;
use super::side::Side;
use crate::dicom::find::Completeness;
use crate::dicom::study::SeriesMatch;
use crate::prober::{Failure, ProbeContext, Reason};

/// Time kept for closing both sides after series detail: its queries stop this long before
/// the probe's deadline.
const CLOSE_RESERVE: Duration = Duration::from_millis(1250);

/// A series of an incomplete study that the destination lacks or holds short.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Shortfall {
    pub uid: String,
    pub number: Option<String>,
    pub modality: Option<String>,
    /// Instances on the source and on the destination, where reported (`there` is `None`
    /// for a missing series).
    pub here: Option<u64>,
    pub there: Option<u64>,
}

/// What the series of one study show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Series {
    pub missing: Vec<Shortfall>,
    pub incomplete: Vec<Shortfall>,
}

/// One side's answer for the series of a study: its matches and how it ended.
pub(super) struct Answered {
    pub matches: Vec<SeriesMatch>,
    pub completeness: Completeness,
}

/// Compares the series of study `uid` on the two sides; `Err` says why they are unknown.
pub(super) fn compare_series(
    uid: &str,
    source: &Answered,
    destination: &Answered,
) -> Result<Series, String> {
    let here = tally(uid, source, "source")?;
    let there = tally(uid, destination, "destination")?;
    if here.is_empty() {
        return Err("the source listed no series of it".into());
    }
    // Only studies the destination holds are looked into: no series at all is an archive that
    // does not answer at SERIES level, not a study without series.
    if there.is_empty() {
        return Err("the destination listed no series of a study it holds".into());
    }
    let mut series = Series::default();
    for (uid, (first, count)) in here {
        let shortfall = |there: Option<u64>| Shortfall {
            uid: uid.to_string(),
            number: first.number.clone(),
            modality: first.modality.clone(),
            here: count,
            there,
        };
        match there.get(uid) {
            None => series.missing.push(shortfall(None)),
            Some((_, Some(there))) if count.is_some_and(|here| *there < here) => {
                series.incomplete.push(shortfall(Some(*there)));
            }
            Some(_) => {}
        }
    }
    let by_number = |s: &Shortfall| {
        let number = s.number.as_deref().and_then(|n| n.parse::<i64>().ok());
        (number.is_none(), number, s.uid.clone())
    };
    series.missing.sort_by_key(by_number);
    series.incomplete.sort_by_key(by_number);
    Ok(series)
}

/// One side's series by SeriesInstanceUID: the first match of each, and the instance count
/// summed over its matches (unknown if any match lacks one).
fn tally<'m>(
    study: &str,
    answer: &'m Answered,
    side: &str,
) -> Result<HashMap<&'m str, (&'m SeriesMatch, Option<u64>)>, String> {
    match answer.completeness {
        Completeness::Complete => {}
        Completeness::CutOff => return Err(format!("the {side}'s answer was cut off (0xfe00)")),
        Completeness::Failed => {
            return Err(format!("the {side} did not answer a SERIES-level query"))
        }
    }
    let mut series: HashMap<&str, (&SeriesMatch, Option<u64>)> = HashMap::new();
    for m in &answer.matches {
        if m.uid.is_empty() {
            return Err(format!("the {side} answered without SeriesInstanceUID"));
        }
        match m.study_uid.as_deref() {
            Some(s) if s == study => {}
            Some(_) => {
                return Err(format!(
                    "the {side} answered with series of other studies (it ignores StudyInstanceUID at SERIES level)"
                ))
            }
            None => return Err(format!("the {side} answered without StudyInstanceUID")),
        }
        series
            .entry(&m.uid)
            .and_modify(|(_, count)| {
                *count = count.zip(m.instances).map(|(a, b)| a.saturating_add(b))
            })
            .or_insert((m, m.instances));
    }
    Ok(series)
}

/// What series detail found over the studies it compared.
#[derive(Debug, Default)]
pub(super) struct Detail<'a> {
    /// Studies it was asked to look into.
    pub asked: usize,
    /// Studies whose series were compared on both sides.
    pub compared: usize,
    pub missing: usize,
    pub incomplete: usize,
    /// Studies with a series missing or short.
    pub found_incomplete: Vec<&'a Study>,
}

/// Compares the series of `studies` (incomplete, then of unknown completeness, oldest first)
/// on the two sides, logging each series the destination lacks or holds short. Stops when a
/// side's association broke off or time runs short; the rest stay unknown.
pub(super) async fn detail<'a>(
    ctx: &ProbeContext<'_>,
    source: &mut Side<'_, '_>,
    destination: &mut Side<'_, '_>,
    studies: &[&'a Study],
) -> Detail<'a> {
    let mut detail = Detail {
        asked: studies.len(),
        ..Detail::default()
    };
    let Some(stop) = ctx.deadline.checked_sub(CLOSE_RESERVE) else {
        return detail;
    };
    let mut reconnected = false;
    for (i, study) in studies.iter().enumerate() {
        let uid = study.uid();
        let late = Instant::now() >= stop;
        if late || !source.usable() || !destination.usable() {
            ctx.log.info(format!(
                "series detail: stopped before the series of {} more incomplete studies ({})",
                studies.len() - i,
                if late {
                    "too little time left"
                } else {
                    "a side's association broke off"
                }
            ));
            break;
        }
        let (mut here, there) = tokio::join!(
            ask(ctx, source, uid, stop),
            ask(ctx, destination, uid, stop)
        );
        // The source waited while the destination was confirmed: one that closed its idle
        // association is associated with again, once.
        if here.is_err() && !source.usable() && !reconnected && Instant::now() < stop {
            reconnected = true;
            if let Err(Failure { detail, .. }) = &here {
                ctx.log.info(format!(
                    "source: its association broke off ({detail}); associating again for series detail"
                ));
            }
            here = match tokio::time::timeout_at(stop, source.reconnect(ctx)).await {
                Ok(Ok(())) => ask(ctx, source, uid, stop).await,
                Ok(Err(failure)) => Err(failure),
                Err(_) => Err(Failure::new(
                    source.stage(),
                    Reason::Timeout,
                    "no association before the time left for series detail ran out",
                )),
            };
        }
        let compared = match (here, there) {
            (Ok(here), Ok(there)) => compare_series(uid, &here, &there),
            (Err(failure), _) | (_, Err(failure)) => Err(failure.detail),
        };
        match compared {
            Ok(series) => {
                detail.compared += 1;
                detail.missing += series.missing.len();
                detail.incomplete += series.incomplete.len();
                if !series.missing.is_empty() || !series.incomplete.is_empty() {
                    detail.found_incomplete.push(study);
                }
                log_series(ctx, uid, &series);
            }
            Err(why) => ctx
                .log
                .info(format!("study {uid:?}: its series are unknown: {why}")),
        }
    }
    detail
}

/// One side's series of study `uid`.
async fn ask(
    ctx: &ProbeContext<'_>,
    side: &mut Side<'_, '_>,
    uid: &str,
    stop: Instant,
) -> Result<Answered, Failure> {
    let mut matches = Vec::new();
    let answer = side
        .find_series(ctx, uid, stop, &mut |m| matches.push(m))
        .await?;
    Ok(Answered {
        matches,
        completeness: answer.completeness(),
    })
}

fn log_series(ctx: &ProbeContext<'_>, uid: &str, series: &Series) {
    let count = |n: Option<u64>| n.map_or("an unknown number of".to_string(), |n| n.to_string());
    ctx.log.info(format!(
        "study {uid:?}: {} series missing, {} incomplete",
        series.missing.len(),
        series.incomplete.len()
    ));
    for (s, state) in series
        .missing
        .iter()
        .map(|s| (s, "missing"))
        .chain(series.incomplete.iter().map(|s| (s, "incomplete")))
    {
        ctx.log.info(format!(
            "  {state} series {:?} (number {}, {}): {} instances at the source, {} at the destination",
            s.uid,
            s.number.as_deref().unwrap_or("unknown"),
            s.modality.as_deref().unwrap_or("modality unknown"),
            count(s.here),
            s.there.map_or("none".to_string(), |n| n.to_string()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(study: &str, uid: &str, number: &str, instances: Option<u64>) -> SeriesMatch {
        SeriesMatch {
            study_uid: Some(study.to_string()),
            uid: uid.to_string(),
            number: Some(number.to_string()),
            modality: Some("MR".to_string()),
            instances,
        }
    }

    fn complete(matches: Vec<SeriesMatch>) -> Answered {
        Answered {
            matches,
            completeness: Completeness::Complete,
        }
    }

    #[test]
    fn missing_and_short_series_by_uid() {
        let source = complete(vec![
            series("1", "1.1", "1", Some(10)),
            series("1", "1.2", "2", Some(5)),
            series("1", "1.3", "3", Some(4)),
            series("1", "1.4", "10", None),
        ]);
        let destination = complete(vec![
            series("1", "1.1", "1", Some(10)),
            series("1", "1.3", "3", Some(2)),
            // Only on the destination: not the source's business.
            series("1", "1.9", "9", Some(1)),
            series("1", "1.4", "10", Some(1)),
        ]);
        let found = compare_series("1", &source, &destination).unwrap();
        let uids = |v: &[Shortfall]| v.iter().map(|s| s.uid.clone()).collect::<Vec<_>>();
        assert_eq!(uids(&found.missing), ["1.2"]);
        assert_eq!(uids(&found.incomplete), ["1.3"]);
        assert_eq!(
            (found.incomplete[0].here, found.incomplete[0].there),
            (Some(4), Some(2))
        );
        assert_eq!(found.missing[0].there, None);
    }

    #[test]
    fn a_series_listed_twice_counts_its_instances_once_summed() {
        let source = complete(vec![series("1", "1.1", "1", Some(6))]);
        let destination = complete(vec![
            series("1", "1.1", "1", Some(3)),
            series("1", "1.1", "1", Some(3)),
        ]);
        assert_eq!(
            compare_series("1", &source, &destination).unwrap(),
            Series::default()
        );
    }

    #[test]
    fn answers_that_prove_nothing_leave_the_series_unknown() {
        let good = || complete(vec![series("1", "1.1", "1", Some(2))]);
        let cases = [
            (
                Answered {
                    matches: vec![],
                    completeness: Completeness::Failed,
                },
                "did not answer a SERIES-level query",
            ),
            (
                Answered {
                    matches: vec![],
                    completeness: Completeness::CutOff,
                },
                "cut off",
            ),
            (
                complete(vec![series("2", "2.1", "1", Some(2))]),
                "series of other studies",
            ),
            (
                complete(vec![series("1", "", "1", Some(2))]),
                "without SeriesInstanceUID",
            ),
            (
                complete(vec![SeriesMatch {
                    study_uid: None,
                    ..series("1", "1.1", "1", Some(2))
                }]),
                "without StudyInstanceUID",
            ),
        ];
        for (answer, why) in cases {
            let err = compare_series("1", &good(), &answer).unwrap_err();
            assert!(err.contains(why), "{err}");
            let err = compare_series("1", &answer, &good()).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        let err = compare_series("1", &complete(vec![]), &good()).unwrap_err();
        assert!(err.contains("no series"), "{err}");
        let err = compare_series("1", &good(), &complete(vec![])).unwrap_err();
        assert!(err.contains("no series of a study it holds"), "{err}");
    }
}
