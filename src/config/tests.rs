//! The config file's tests: every way a file can be wrong, with the error it must give.

use super::*;

/// Whether `err` is a YAML error at `key`.
fn yaml_at(err: &ParseError, key: &str) -> bool {
    matches!(err, ParseError::Yaml { path: Some(path), .. } if path == key)
}

/// Whether `err` is module `name`'s, and what it says of the module passes `check`.
fn in_module(err: &ParseError, name: &str, check: fn(&ModuleError) -> bool) -> bool {
    matches!(err, ParseError::Module { name: n, source, .. } if n == name && check(source))
}

/// Each file under `tests/testdata/config/` is one way a config can be wrong; the error
/// must say what is wrong and where, in its variant and in the line the operator reads.
#[test]
fn bad_configs_are_refused_with_a_useful_error() {
    use ModuleError as M;
    type Check = fn(&ParseError) -> bool;
    let cases: [(&str, &str, Check); 24] = [
        ("unknown_top_key.yml", "unknown field `modulez`", |e| {
            yaml_at(e, "modulez")
        }),
        (
            "unknown_module_key.yml",
            "modules.echo.timout: unknown field `timout`",
            |e| yaml_at(e, "modules.echo.timout"),
        ),
        (
            "unknown_dicom_key.yml",
            "modules.echo.dicom.calling_ae: unknown field `calling_ae`",
            |e| yaml_at(e, "modules.echo.dicom.calling_ae"),
        ),
        (
            "bad_duration.yml",
            "modules.echo.timeout: invalid duration \"5 seconds\": expected e.g. 500ms, 10s, \
             1m30s, 24h at line 4 column 14",
            |e| yaml_at(e, "modules.echo.timeout"),
        ),
        (
            "zero_timeout.yml",
            "modules.echo.timeout: must be greater than 0 at line 4 column 14",
            |e| in_module(e, "echo", |m| matches!(m, M::ZeroTimeout)),
        ),
        (
            "bad_calling_aet.yml",
            "modules.echo.dicom.calling_aet: AE title is 22 characters long; at most 16",
            |e| yaml_at(e, "modules.echo.dicom.calling_aet"),
        ),
        (
            "backslash_called_aet.yml",
            "modules.echo.dicom.called_aet: AE title contains a backslash",
            |e| yaml_at(e, "modules.echo.dicom.called_aet"),
        ),
        (
            "unknown_prober.yml",
            "modules.echo.prober: unknown variant `ping`",
            |e| yaml_at(e, "modules.echo.prober"),
        ),
        (
            "missing_prober.yml",
            "modules.echo: missing field `prober`",
            |e| yaml_at(e, "modules.echo"),
        ),
        (
            "bad_pdu.yml",
            "modules.echo.dicom.max_pdu_length: 100 is outside",
            |e| {
                in_module(e, "echo", |m| {
                    matches!(
                        m,
                        M::PduLength {
                            block: "dicom",
                            length: 100
                        }
                    )
                })
            },
        ),
        ("not_yaml.yml", "line", |e| {
            matches!(e, ParseError::Yaml { path: None, .. })
        }),
        ("empty.yml", "modules: no module is defined", |e| {
            matches!(e, ParseError::NoModules)
        }),
        ("no_modules.yml", "modules: no module is defined", |e| {
            matches!(e, ParseError::NoModules)
        }),
        ("empty_modules.yml", "modules: no module is defined", |e| {
            matches!(e, ParseError::NoModules)
        }),
        (
            "huge_lookback.yml",
            "modules.check.send_check.lookback: must be greater than 0 and at most",
            |e| in_module(e, "check", |m| matches!(m, M::Lookback { .. })),
        ),
        (
            "reserved_key.yml",
            "modules.check.send_check.query.StudyDate: not allowed here",
            |e| {
                in_module(e, "check", |m| {
                    matches!(m, M::ReservedKey { prober: ProberKind::SendCheck, key, .. }
                        if key == "StudyDate")
                })
            },
        ),
        (
            "grace_too_long.yml",
            "modules.check.send_check.grace: must be shorter than lookback at line 7 column 14",
            |e| in_module(e, "check", |m| matches!(m, M::Grace)),
        ),
        (
            "send_check_no_destination.yml",
            "modules.check.send_check: required by prober send_check (it names the destination) at line 3",
            |e| in_module(e, "check", |m| matches!(m, M::MissingSendCheck)),
        ),
        (
            "block_for_other_prober.yml",
            "modules.e.find: only for prober find, not echo at line 4",
            |e| {
                in_module(e, "e", |m| {
                    matches!(
                        m,
                        M::OtherProbersBlock {
                            block: ProberKind::Find,
                            prober: ProberKind::Echo
                        }
                    )
                })
            },
        ),
        (
            "bad_keyword.yml",
            "modules.f.find.query: \"NoSuchKeyword\" is not a DICOM keyword at line 5",
            |e| {
                in_module(e, "f", |m| {
                    matches!(
                        m,
                        M::Query {
                            prober: ProberKind::Find,
                            ..
                        }
                    )
                })
            },
        ),
        (
            "bad_date.yml",
            "modules.f.find.query: StudyDate: \"tomorrow\" is not a DICOM date: write YYYYMMDD, \
             a range YYYYMMDD-YYYYMMDD (either end may be left out), today or yesterday at line 7",
            |e| {
                in_module(e, "f", |m| {
                    matches!(
                        m,
                        M::Query {
                            reason: crate::dicom::query::KeyError::NotADate { .. },
                            ..
                        }
                    )
                })
            },
        ),
        (
            "bad_allowed_target.yml",
            "allowed_targets: \"10.0.0.0/33\": prefix length must be 0..=32 at line 1",
            |e| {
                matches!(e, ParseError::AllowedTargets { source: AllowListError::PrefixLength { entry, max: 32 }, .. }
                    if entry == "10.0.0.0/33")
            },
        ),
        (
            "bad_destination.yml",
            "modules.check.send_check.destination: invalid target",
            |e| yaml_at(e, "modules.check.send_check.destination"),
        ),
        (
            "bad_label.yml",
            "modules.check.send_check.labels[1]: unknown variant `shoe_size`",
            |e| yaml_at(e, "modules.check.send_check.labels[1]"),
        ),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/config");
    for (file, want, expected) in cases {
        let path = dir.join(file);
        let err = Config::load(&path).expect_err(file);
        let ConfigError::Invalid {
            path: named,
            source,
        } = &err
        else {
            panic!("{file}: {err:?} should be an invalid config");
        };
        assert_eq!(*named, path.display().to_string(), "{file}");
        assert!(expected(source), "{file}: unexpected error {source:?}");
        let err = err.to_string();
        assert!(
            err.contains(want),
            "{file}: error {err:?} should contain {want:?}"
        );
        assert!(
            !err.contains('\n'),
            "{file}: error should be one line: {err:?}"
        );
        if !matches!(**source, ParseError::NoModules) {
            assert!(
                err.contains(" at line "),
                "{file}: error without its line: {err:?}"
            );
        }
    }
}

/// Mistakes no file above shows, each refused with its variant and the exact line the
/// operator reads.
#[test]
fn invalid_modules_name_the_module_and_the_key() {
    use ModuleError as M;
    type Check = fn(&ParseError) -> bool;
    let module = |body: &str| format!("modules:\n  m:\n{body}");
    let send_check = |extra: &str| {
        module(&format!(
            "    prober: send_check\n    send_check:\n      destination: A@127.0.0.1:104\n{extra}"
        ))
    };
    let cases: [(String, &str, Check); 18] = [
        (
            String::new(),
            "modules: no module is defined; a config needs at least one",
            |e| matches!(e, ParseError::NoModules),
        ),
        (
            "modules:\n  '':\n    prober: echo\n".into(),
            "modules: a module has an empty name",
            |e| matches!(e, ParseError::EmptyModuleName),
        ),
        (
            module("    prober: find\n    find: {model: worklist, level: STUDY}\n"),
            "modules.m.find.level: a worklist query has no level at line 4",
            |e| in_module(e, "m", |m| matches!(m, M::WorklistLevel)),
        ),
        (
            module("    prober: find\n    find:\n      query: {QueryRetrieveLevel: STUDY}\n"),
            "modules.m.find.query.QueryRetrieveLevel: not allowed here: set by find.level",
            |e| {
                in_module(e, "m", |m| {
                    matches!(m, M::ReservedKey { prober: ProberKind::Find, key, .. }
                        if key == "QueryRetrieveLevel")
                })
            },
        ),
        (
            module("    prober: find\n    find: {max_matches: 0}\n"),
            "modules.m.find.max_matches: must be greater than 0",
            |e| in_module(e, "m", |m| matches!(m, M::MaxMatches(ProberKind::Find))),
        ),
        (
            send_check("      max_matches: 0\n"),
            "modules.m.send_check.max_matches: must be greater than 0",
            |e| in_module(e, "m", |m| matches!(m, M::MaxMatches(ProberKind::SendCheck))),
        ),
        (
            send_check("      labels: [study_id, modality, study_id]\n"),
            "modules.m.send_check.labels: study_id is listed twice",
            |e| {
                in_module(e, "m", |m| {
                    matches!(m, M::DuplicateLabel(name) if *name == StudyLabel::StudyId.name())
                })
            },
        ),
        (
            send_check("      compare_attributes: [PatientID, PatientNmae]\n"),
            "modules.m.send_check.compare_attributes: \"PatientNmae\" is not a DICOM keyword",
            |e| in_module(e, "m", |m| matches!(m, M::CompareAttribute { keyword, .. } if keyword == "PatientNmae")),
        ),
        (
            send_check("      compare_attributes: [StudyInstanceUID]\n"),
            "modules.m.send_check.compare_attributes: \"StudyInstanceUID\" is how the check finds \
             and counts studies; it is not compared",
            |e| in_module(e, "m", |m| matches!(m, M::CompareAttribute { .. })),
        ),
        (
            send_check("      compare_attributes: [OtherPatientIDsSequence]\n"),
            "modules.m.send_check.compare_attributes: \"OtherPatientIDsSequence\" is a sequence; \
             name an attribute",
            |e| in_module(e, "m", |m| matches!(m, M::CompareAttribute { .. })),
        ),
        (
            send_check("      compare_attributes: [PixelData]\n"),
            "modules.m.send_check.compare_attributes: \"PixelData\" is not text; only text \
             attributes are compared",
            |e| in_module(e, "m", |m| matches!(m, M::CompareAttribute { .. })),
        ),
        (
            send_check("      compare_attributes: [PatientID, PatientID]\n"),
            "modules.m.send_check.compare_attributes: \"PatientID\" is listed twice",
            |e| in_module(e, "m", |m| matches!(m, M::CompareAttribute { .. })),
        ),
        (
            send_check("      compare_attributes: [ModalitiesInStudy]\n"),
            "modules.m.send_check.compare_attributes: \"ModalitiesInStudy\" is computed by each \
             archive from the instances it holds (an incomplete study differs in it); it is not \
             compared",
            |e| in_module(e, "m", |m| matches!(m, M::CompareAttribute { .. })),
        ),
        (
            send_check("      series_detail: true\n      compare_instances: false\n"),
            "modules.m.send_check.series_detail: needs compare_instances (series are looked \
             into for studies the instance counts show incomplete)",
            |e| in_module(e, "m", |m| matches!(m, M::SeriesDetailWithoutCounts)),
        ),
        (
            send_check("      max_series_detail_studies: 0\n"),
            "modules.m.send_check.max_series_detail_studies: must be greater than 0",
            |e| in_module(e, "m", |m| matches!(m, M::SeriesDetailStudies)),
        ),
        (
            send_check("      destination_dicom: {max_pdu_length: 10}\n"),
            "modules.m.send_check.destination_dicom.max_pdu_length: 10 is outside \
             4096..=1048576",
            |e| {
                in_module(e, "m", |m| {
                    matches!(
                        m,
                        M::PduLength {
                            block: "send_check.destination_dicom",
                            length: 10
                        }
                    )
                })
            },
        ),
        (
            module("    prober: echo\n    dicom:\n      tls: {}\n"),
            "modules.m.dicom.tls.ca_file: required unless insecure_skip_verify is true",
            |e| {
                in_module(e, "m", |m| {
                    matches!(
                        m,
                        M::Tls {
                            block: "dicom",
                            source: TlsError::Client(_)
                        }
                    )
                })
            },
        ),
        (
            send_check(
                "      destination_dicom:\n        tls: {insecure_skip_verify: true, server_name: 'a b'}\n",
            ),
            "modules.m.send_check.destination_dicom.tls.server_name: invalid TLS server name \
             \"a b\"",
            |e| {
                in_module(e, "m", |m| {
                    matches!(
                        m,
                        M::Tls {
                            block: "send_check.destination_dicom",
                            source: TlsError::ServerName(_)
                        }
                    )
                })
            },
        ),
    ];
    for (text, want, expected) in cases {
        let err = Config::parse(&text).expect_err(&text);
        assert!(expected(&err), "{text}: unexpected error {err:?}");
        let err = err.to_string();
        assert!(
            err.starts_with(want),
            "{text}: {err:?} should start with {want:?}"
        );
        assert!(
            !err.contains('\n'),
            "{text}: error should be one line: {err:?}"
        );
    }
}

#[test]
fn shipped_config_is_valid_and_defaults_apply() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("modules.yml");
    let config = Config::load(&path).expect("shipped modules.yml loads");
    let echo = &config.modules["echo"];
    assert_eq!(echo.prober.kind(), ProberKind::Echo);
    let Prober::SendCheck(check) = &config.modules["send_check"].prober else {
        panic!("the shipped send_check module is a send_check");
    };
    assert_eq!(check.max_confirmations, 200);

    let config = Config::parse("modules:\n  m:\n    prober: echo\n").unwrap();
    let m = &config.modules["m"];
    assert_eq!(m.timeout.0, DEFAULT_TIMEOUT);
    assert_eq!(m.dicom.calling_aet.as_str(), DEFAULT_CALLING_AET);
    assert_eq!(m.dicom.called_aet.as_str(), DEFAULT_CALLED_AET);
    assert_eq!(m.dicom.max_pdu_length, DEFAULT_MAX_PDU_LENGTH);

    // A find module without a find block gets the same defaults as one with an empty block.
    for text in ["    prober: find\n", "    prober: find\n    find: {}\n"] {
        let config = Config::parse(&format!("modules:\n  m:\n{text}")).unwrap();
        let Prober::Find(find) = &config.modules["m"].prober else {
            panic!("a find module is a find");
        };
        assert_eq!(find.max_matches, 100_000);
        assert_eq!(find.model, Model::StudyRoot);
    }
}

/// `/config` shows a module in the file's shape, and that text loads back the same.
#[test]
fn a_config_renders_back_to_the_same_modules() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("modules.yml");
    let config = Config::load(&path).expect("shipped modules.yml loads");
    let yaml = config.to_yaml();
    let again = Config::parse(&yaml).expect("rendered config loads");
    assert_eq!(again.to_yaml(), yaml);
    for (name, module) in &config.modules {
        assert_eq!(
            again.modules[name].prober.kind(),
            module.prober.kind(),
            "{name}"
        );
    }
}

/// The line is the key's own, also in a module whose name holds a dot and for a key of a
/// sequence's item.
#[test]
fn lines_point_at_keys_in_dotted_module_names_and_sequence_items() {
    let dotted = "modules:\n  a:\n    prober: echo\n  a.b:\n    prober: echo\n    timeout: bogus\n";
    let error = Config::parse(dotted)
        .expect_err("a bad duration")
        .to_string();
    assert!(
        error.starts_with("modules.a.b.timeout: invalid duration")
            && error.ends_with(" at line 6 column 14"),
        "{error}"
    );
    let worklist = "modules:\n  wl:\n    prober: find\n    find:\n      model: worklist\n      \
                    query:\n        PatientName:\n        ScheduledProcedureStepSequence:\n          \
                    Modality: MR\n          ScheduledProcedureStepStartDate: tomorrow\n";
    let error = Config::parse(worklist).expect_err("a bad date").to_string();
    assert!(
        error.contains(
            "modules.wl.find.query: ScheduledProcedureStepSequence.ScheduledProcedureStepStartDate: \
             \"tomorrow\" is not a DICOM date"
        ) && error.contains(" at line 10 "),
        "{error}"
    );
}
