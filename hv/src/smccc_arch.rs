//! The SMC Calling Convention's Arm Architecture Service (DEN0028:
//! SMCCC_VERSION, SMCCC_ARCH_FEATURES, SMCCC_ARCH_SOC_ID and the
//! SMCCC_ARCH_WORKAROUND_1/2/3 firmware mitigations) as hv offers it to
//! its guest through HVC or a trapped SMC.
//!
//! hv implements SMCCC 1.2 for its guest (`GUEST_VERSION`): it answers
//! every call in w0 and leaves every other register as the guest had it.
//! The mitigations are the firmware's: each CPU asks its firmware at
//! bring-up (`query`, through the SMC conduit hv itself uses) what
//! SMCCC_ARCH_FEATURES says for each of them on that PE, and the guest's
//! vCPU, pinned to that PE, gets exactly that answer when it is one the
//! specification defines for the call, else NOT_SUPPORTED
//! (`arch_features`). So hv never claims a mitigation the firmware lacks,
//! nor an immunity the firmware did not report. A guest's workaround call
//! is made to the firmware on the same PE (`ArchOutcome::Forward`) only
//! when the firmware reported the call implemented there.
//!
//! One exception keeps hv itself safe: SMCCC_ARCH_WORKAROUND_2 switches
//! the firmware's Speculative Store Bypass mitigation on or off for the
//! whole PE, EL2 included, so a guest's disable would weaken hv too. When
//! the firmware reports the dynamic form (0), hv enables the mitigation
//! on each PE at bring-up (`query`), tells the guest 1 (DEN0028: the call
//! is not needed on this PE, it may be made safely), and answers a guest's
//! WORKAROUND_2 call itself without reaching the firmware
//! (`handle`: SUCCESS, the mitigation stays on). KVM likewise never offers
//! the dynamic form to its guests.
//!
//! SMCCC_VERSION is discovered through PSCI_FEATURES (PSCI 1.0 and later),
//! and SMCCC_ARCH_FEATURES exists from SMCCC 1.1: on a firmware with
//! neither, every call is NOT_SUPPORTED for the guest (the firmware has no
//! discoverable mitigation).

use smccc::arch::{
    self, Version, SMCCC_ARCH_FEATURES, SMCCC_ARCH_SOC_ID, SMCCC_ARCH_WORKAROUND_1,
    SMCCC_ARCH_WORKAROUND_2, SMCCC_ARCH_WORKAROUND_3, SMCCC_VERSION,
};

/// The SMCCC version hv implements for its guest: 1.2, the first with
/// SMCCC_ARCH_SOC_ID (1.1 brought SMCCC_ARCH_FEATURES and the workarounds).
pub const GUEST_VERSION: Version = Version { major: 1, minor: 2 };

/// SMCCC return codes of the Arm Architecture Service.
pub mod status {
    pub const SUCCESS: i32 = 0;
    pub const NOT_SUPPORTED: i32 = -1;
    pub const NOT_REQUIRED: i32 = -2;
    /// SMCCC_ARCH_FEATURES for a workaround: this PE is not affected.
    pub const UNAFFECTED: i32 = 1;
}

/// What the firmware's SMCCC_ARCH_FEATURES answered on one PE for the
/// calls hv passes on (raw w0, as a signed 32-bit value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareArch {
    pub workaround_1: i32,
    pub workaround_2: i32,
    pub workaround_3: i32,
    pub soc_id: i32,
    /// How far the discovery went, with the firmware's own answers, so a
    /// boot line shows that the firmware was asked (review 27 I-2).
    pub discovery: Discovery,
}

/// The discovery steps DEN0028 prescribes before SMCCC_ARCH_FEATURES,
/// as far as `query` got on one PE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// Nothing was asked (no answers recorded for this PE).
    NotAsked,
    /// The firmware's PSCI is older than 1.0: no PSCI_FEATURES, so no
    /// SMCCC_VERSION to discover.
    NoPsciFeatures,
    /// PSCI_FEATURES(SMCCC_VERSION) answered this (not SUCCESS): the
    /// firmware has no SMCCC_VERSION.
    VersionNotDiscoverable(i32),
    /// SMCCC_VERSION answered this (raw w0); from 1.1 on,
    /// SMCCC_ARCH_FEATURES was asked for each call.
    Version(i32),
}

impl core::fmt::Display for Discovery {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Discovery::NotAsked => write!(f, "firmware not asked"),
            Discovery::NoPsciFeatures => write!(f, "PSCI before 1.0, no PSCI_FEATURES"),
            Discovery::VersionNotDiscoverable(answer) => {
                write!(f, "PSCI_FEATURES(SMCCC_VERSION) = {answer}")
            }
            Discovery::Version(raw) if raw >= 0 => {
                write!(f, "SMCCC_VERSION = {}.{}", raw >> 16, raw & 0xffff)
            }
            Discovery::Version(raw) => write!(f, "SMCCC_VERSION = {raw}"),
        }
    }
}

impl FirmwareArch {
    /// A firmware without SMCCC_ARCH_FEATURES: nothing implemented.
    pub const NONE: Self = Self {
        workaround_1: status::NOT_SUPPORTED,
        workaround_2: status::NOT_SUPPORTED,
        workaround_3: status::NOT_SUPPORTED,
        soc_id: status::NOT_SUPPORTED,
        discovery: Discovery::NotAsked,
    };

    /// Nothing implemented, after discovery ended at `discovery`.
    const fn none_after(discovery: Discovery) -> Self {
        Self {
            discovery,
            ..Self::NONE
        }
    }

    /// The firmware's answer for `function`, if hv passes it on.
    fn answer(&self, function: u32) -> Option<i32> {
        match function {
            SMCCC_ARCH_WORKAROUND_1 => Some(self.workaround_1),
            SMCCC_ARCH_WORKAROUND_2 => Some(self.workaround_2),
            SMCCC_ARCH_WORKAROUND_3 => Some(self.workaround_3),
            SMCCC_ARCH_SOC_ID => Some(self.soc_id),
            _ => None,
        }
    }
}

impl core::fmt::Display for FirmwareArch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let answer = |value: i32| match value {
            status::SUCCESS => "implemented",
            status::UNAFFECTED => "not affected",
            status::NOT_SUPPORTED => "not supported",
            status::NOT_REQUIRED => "not required",
            _ => "unknown answer",
        };
        write!(
            f,
            "{}: WORKAROUND_1 {} ({}), WORKAROUND_2 {} ({}), WORKAROUND_3 {} ({}), SOC_ID {} ({})",
            self.discovery,
            answer(self.workaround_1),
            self.workaround_1,
            answer(self.workaround_2),
            self.workaround_2,
            answer(self.workaround_3),
            self.workaround_3,
            answer(self.soc_id),
            self.soc_id
        )
    }
}

/// Asks the firmware through conduit `C`, on the calling PE, what
/// SMCCC_ARCH_FEATURES says for each call hv passes on. `psci_1_0`: the
/// firmware's PSCI is 1.0 or later (PSCI_FEATURES exists, through which
/// SMCCC_VERSION is discovered). Before SMCCC 1.1 there is no
/// SMCCC_ARCH_FEATURES: `FirmwareArch::NONE`.
///
/// When the firmware implements WORKAROUND_2 dynamically (0), it is
/// called here with w1 = 1, so the Speculative Store Bypass mitigation is
/// on for this PE whatever state firmware or a previous OS left; nothing
/// turns it off afterwards (`handle` never forwards a guest's call).
pub fn query<C: smccc::Call>(psci_1_0: bool) -> FirmwareArch {
    if !psci_1_0 {
        return FirmwareArch::none_after(Discovery::NoPsciFeatures);
    }
    if let Err(error) = smccc::psci::psci_features::<C>(SMCCC_VERSION) {
        return FirmwareArch::none_after(
            Discovery::VersionNotDiscoverable(i64::from(error) as i32),
        );
    }
    let discovery = match arch::version::<C>() {
        Ok(version) => {
            let discovery = Discovery::Version(u32::from(version) as i32);
            if version < (Version { major: 1, minor: 1 }) {
                return FirmwareArch::none_after(discovery);
            }
            discovery
        }
        Err(error) => return FirmwareArch::none_after(Discovery::Version(i32::from(error))),
    };
    let ask = |function| match arch::features::<C>(function) {
        Ok(value) => value as i32,
        Err(error) => i32::from(error),
    };
    let answers = FirmwareArch {
        workaround_1: ask(SMCCC_ARCH_WORKAROUND_1),
        workaround_2: ask(SMCCC_ARCH_WORKAROUND_2),
        workaround_3: ask(SMCCC_ARCH_WORKAROUND_3),
        soc_id: ask(SMCCC_ARCH_SOC_ID),
        discovery,
    };
    if answers.workaround_2 == status::SUCCESS {
        // DEN0028 defines no return value for WORKAROUND_2: there is
        // nothing to check, the firmware's mitigation is now enabled.
        let _ = arch::arch_workaround_2::<C>(true);
    }
    answers
}

/// SMCCC_ARCH_FEATURES(`function`) for the guest on a PE whose firmware
/// answered `firmware`. For each workaround only the answers DEN0028
/// defines are passed on, anything else is NOT_SUPPORTED:
/// - WORKAROUND_1 and _3: 0 (implemented, and this PE needs it) or 1
///   (this PE is not affected);
/// - WORKAROUND_2: 1 (not affected, or mitigated for good) or
///   NOT_REQUIRED; a dynamic mitigation (0) is shown as 1, since hv keeps
///   it enabled and never lets the guest turn it off (module comment);
/// - SOC_ID: 0 (implemented).
///
/// SMCCC_VERSION and SMCCC_ARCH_FEATURES are hv's own: implemented.
pub fn arch_features(function: u32, firmware: &FirmwareArch) -> i32 {
    let defined: &[i32] = match function {
        SMCCC_VERSION | SMCCC_ARCH_FEATURES => return status::SUCCESS,
        SMCCC_ARCH_WORKAROUND_1 | SMCCC_ARCH_WORKAROUND_3 => &[status::SUCCESS, status::UNAFFECTED],
        SMCCC_ARCH_WORKAROUND_2 => &[status::SUCCESS, status::UNAFFECTED, status::NOT_REQUIRED],
        SMCCC_ARCH_SOC_ID => &[status::SUCCESS],
        _ => return status::NOT_SUPPORTED,
    };
    match firmware.answer(function) {
        Some(status::SUCCESS) if function == SMCCC_ARCH_WORKAROUND_2 => status::UNAFFECTED,
        Some(answer) if defined.contains(&answer) => answer,
        _ => status::NOT_SUPPORTED,
    }
}

/// What to do with a guest call of the Arm Architecture Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchOutcome {
    /// Resume the guest with this value in x0.
    Return(u64),
    /// Make the same call (32-bit, w1 = `argument`) to the firmware on
    /// this PE and give the guest its w0, sign-extended.
    Forward { function: u32, argument: u32 },
}

fn ret(status: i32) -> ArchOutcome {
    ArchOutcome::Return(status as i64 as u64)
}

/// A guest call with function identifier `function` and x1 `x1`, on a PE
/// whose firmware answered `firmware`; None when it is not an Arm
/// Architecture Service call hv implements (PSCI's, or unknown).
///
/// A workaround or SOC_ID call goes to the firmware when the firmware
/// reported it implemented on this PE (a non-negative SMCCC_ARCH_FEATURES
/// answer, which is also the only case the guest is told it may call it);
/// otherwise it is NOT_SUPPORTED, as the call of an unimplemented function.
/// SOC_ID's x1 (SoC_ID_type) goes with it.
///
/// WORKAROUND_2 never reaches the firmware: where it is implemented, the
/// mitigation is on for good (`query` enabled a dynamic one, the guest
/// was told 1), so hv answers SUCCESS itself and a disable (w1 = 0) has
/// no effect, on the guest or on hv.
pub fn handle(function: u32, x1: u64, firmware: &FirmwareArch) -> Option<ArchOutcome> {
    match function {
        SMCCC_VERSION => Some(ArchOutcome::Return(u32::from(GUEST_VERSION) as u64)),
        SMCCC_ARCH_FEATURES => Some(ret(arch_features(x1 as u32, firmware))),
        SMCCC_ARCH_WORKAROUND_2 => Some(match firmware.answer(function) {
            Some(answer) if answer >= 0 => ret(status::SUCCESS),
            _ => ret(status::NOT_SUPPORTED),
        }),
        SMCCC_ARCH_WORKAROUND_1 | SMCCC_ARCH_WORKAROUND_3 | SMCCC_ARCH_SOC_ID => {
            Some(match firmware.answer(function) {
                Some(answer) if answer >= 0 => ArchOutcome::Forward {
                    function,
                    argument: x1 as u32,
                },
                _ => ret(status::NOT_SUPPORTED),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::cell::RefCell;
    use std::vec::Vec;

    /// A firmware stand-in: PSCI_FEATURES(SMCCC_VERSION), SMCCC_VERSION and
    /// SMCCC_ARCH_FEATURES answers, and a log of the calls made.
    #[derive(Clone, Default)]
    struct Firmware {
        smccc_version_discoverable: bool,
        smccc_version: i32,
        features: Vec<(u32, i32)>,
        calls: Vec<(u32, u32)>,
    }

    std::thread_local! {
        static FIRMWARE: RefCell<Firmware> = RefCell::new(Firmware::default());
    }

    struct FakeConduit;

    impl smccc::Call for FakeConduit {
        fn call32(function: u32, args: [u32; 7]) -> [u32; 8] {
            let w0 = FIRMWARE.with(|f| {
                let mut f = f.borrow_mut();
                f.calls.push((function, args[0]));
                match (function, args[0]) {
                    (smccc::psci::PSCI_FEATURES, SMCCC_VERSION) if f.smccc_version_discoverable => {
                        0
                    }
                    (SMCCC_VERSION, _) => f.smccc_version,
                    (SMCCC_ARCH_FEATURES, asked) => f
                        .features
                        .iter()
                        .find(|(id, _)| *id == asked)
                        .map_or(-1, |&(_, answer)| answer),
                    _ => -1,
                }
            });
            [w0 as u32, 0, 0, 0, 0, 0, 0, 0]
        }

        fn call64(_function: u32, _args: [u64; 17]) -> [u64; 18] {
            [u64::MAX; 18]
        }
    }

    fn query_with(firmware: Firmware, psci_1_0: bool) -> (FirmwareArch, Vec<(u32, u32)>) {
        FIRMWARE.with(|f| *f.borrow_mut() = firmware);
        let answers = query::<FakeConduit>(psci_1_0);
        (answers, FIRMWARE.with(|f| f.borrow().calls.clone()))
    }

    fn smccc_1_1(features: &[(u32, i32)]) -> Firmware {
        Firmware {
            smccc_version_discoverable: true,
            smccc_version: 0x1_0001,
            features: features.to_vec(),
            calls: Vec::new(),
        }
    }

    /// The firmware is asked on this PE, through the discovery DEN0028
    /// prescribes, and its answers are kept as given.
    #[test]
    fn the_firmware_is_queried_through_the_conduit() {
        let (answers, calls) = query_with(
            smccc_1_1(&[
                (SMCCC_ARCH_WORKAROUND_1, 0),
                (SMCCC_ARCH_WORKAROUND_2, -2),
                (SMCCC_ARCH_WORKAROUND_3, 1),
            ]),
            true,
        );
        assert_eq!(
            answers,
            FirmwareArch {
                workaround_1: 0,
                workaround_2: -2,
                workaround_3: 1,
                soc_id: -1,
                discovery: Discovery::Version(0x1_0001),
            }
        );
        assert_eq!(calls[0], (smccc::psci::PSCI_FEATURES, SMCCC_VERSION));
        assert_eq!(calls[1].0, SMCCC_VERSION);
        assert!(calls[2..].iter().all(|&(f, _)| f == SMCCC_ARCH_FEATURES));
    }

    #[test]
    fn firmware_answers_are_reported_by_name() {
        let answers = FirmwareArch {
            workaround_1: 0,
            workaround_2: -2,
            workaround_3: 1,
            soc_id: 9,
            discovery: Discovery::Version(0x1_0001),
        };
        assert_eq!(
            std::format!("{answers}"),
            "SMCCC_VERSION = 1.1: WORKAROUND_1 implemented (0), WORKAROUND_2 not required (-2), WORKAROUND_3 not affected (1), SOC_ID unknown answer (9)"
        );
        let hidden = FirmwareArch::none_after(Discovery::VersionNotDiscoverable(-1));
        assert_eq!(
            std::format!("{hidden}"),
            "PSCI_FEATURES(SMCCC_VERSION) = -1: WORKAROUND_1 not supported (-1), WORKAROUND_2 not supported (-1), WORKAROUND_3 not supported (-1), SOC_ID not supported (-1)"
        );
        assert!(std::format!("{}", FirmwareArch::NONE).starts_with("firmware not asked: "));
    }

    /// No PSCI 1.0, no SMCCC_VERSION, or SMCCC 1.0: no SMCCC_ARCH_FEATURES
    /// is made (it does not exist), and nothing is implemented.
    #[test]
    fn a_firmware_without_arch_features_offers_nothing() {
        let all = [(SMCCC_ARCH_WORKAROUND_1, 0), (SMCCC_ARCH_SOC_ID, 0)];
        let (answers, calls) = query_with(smccc_1_1(&all), false);
        let nothing = |discovery| FirmwareArch {
            discovery,
            ..FirmwareArch::NONE
        };
        assert_eq!(
            (answers, calls.len()),
            (nothing(Discovery::NoPsciFeatures), 0)
        );
        let hidden = Firmware {
            smccc_version_discoverable: false,
            ..smccc_1_1(&all)
        };
        let (answers, calls) = query_with(hidden, true);
        assert_eq!(
            (answers, calls.len()),
            (nothing(Discovery::VersionNotDiscoverable(-1)), 1)
        );
        let old = Firmware {
            smccc_version: 0x1_0000,
            ..smccc_1_1(&all)
        };
        let (answers, calls) = query_with(old, true);
        assert_eq!(
            (answers, calls.len()),
            (nothing(Discovery::Version(0x1_0000)), 2)
        );
    }

    /// SMCCC_ARCH_FEATURES for the guest: the firmware's answer where the
    /// specification defines it for that call, else NOT_SUPPORTED; never a
    /// mitigation (0) or an immunity (1) the firmware did not report.
    #[test]
    fn arch_features_pass_on_only_what_the_firmware_reported() {
        let mitigated = FirmwareArch {
            workaround_1: 0,
            workaround_2: 0,
            workaround_3: 0,
            soc_id: 0,
            discovery: Discovery::Version(0x1_0001),
        };
        for function in [
            SMCCC_ARCH_WORKAROUND_1,
            SMCCC_ARCH_WORKAROUND_2,
            SMCCC_ARCH_WORKAROUND_3,
            SMCCC_ARCH_SOC_ID,
        ] {
            let shown = if function == SMCCC_ARCH_WORKAROUND_2 {
                1 // kept on by hv: "no call needed" (security test below)
            } else {
                0
            };
            assert_eq!(arch_features(function, &mitigated), shown);
            assert_eq!(arch_features(function, &FirmwareArch::NONE), -1);
        }
        let unaffected = FirmwareArch {
            workaround_1: 1,
            workaround_2: -2,
            workaround_3: 1,
            soc_id: 7,
            discovery: Discovery::Version(0x1_0001),
        };
        assert_eq!(arch_features(SMCCC_ARCH_WORKAROUND_1, &unaffected), 1);
        assert_eq!(arch_features(SMCCC_ARCH_WORKAROUND_2, &unaffected), -2);
        assert_eq!(arch_features(SMCCC_ARCH_WORKAROUND_3, &unaffected), 1);
        assert_eq!(
            arch_features(SMCCC_ARCH_SOC_ID, &unaffected),
            -1,
            "7 is no answer SOC_ID defines"
        );
        let odd = FirmwareArch {
            workaround_1: -2,
            workaround_2: 5,
            workaround_3: -3,
            soc_id: -2,
            discovery: Discovery::Version(0x1_0001),
        };
        for function in [
            SMCCC_ARCH_WORKAROUND_1,
            SMCCC_ARCH_WORKAROUND_2,
            SMCCC_ARCH_WORKAROUND_3,
            SMCCC_ARCH_SOC_ID,
        ] {
            assert_eq!(arch_features(function, &odd), -1, "{function:#x}");
        }
        assert_eq!(arch_features(SMCCC_VERSION, &FirmwareArch::NONE), 0);
        assert_eq!(arch_features(SMCCC_ARCH_FEATURES, &FirmwareArch::NONE), 0);
        assert_eq!(arch_features(0x8000_0003, &mitigated), -1);
        assert_eq!(arch_features(0x8400_0000, &mitigated), -1, "PSCI's");
    }

    /// The guest's calls: SMCCC 1.2; ARCH_FEATURES as above (x1's low 32
    /// bits name the function); workarounds and SOC_ID go to the firmware
    /// with their argument only where it implements them; PSCI calls are
    /// not this service's.
    #[test]
    fn guest_calls() {
        let firmware = FirmwareArch {
            workaround_1: 0,
            workaround_2: 0,
            workaround_3: -1,
            soc_id: 0,
            discovery: Discovery::Version(0x1_0001),
        };
        assert_eq!(
            handle(SMCCC_VERSION, 0, &firmware),
            Some(ArchOutcome::Return(0x1_0002))
        );
        assert_eq!(
            handle(
                SMCCC_ARCH_FEATURES,
                0xffff_ffff_0000_0000 | SMCCC_ARCH_WORKAROUND_1 as u64,
                &firmware
            ),
            Some(ArchOutcome::Return(0))
        );
        assert_eq!(
            handle(
                SMCCC_ARCH_FEATURES,
                SMCCC_ARCH_WORKAROUND_3 as u64,
                &firmware
            ),
            Some(ArchOutcome::Return(u64::MAX))
        );
        assert_eq!(
            handle(SMCCC_ARCH_WORKAROUND_1, 0, &firmware),
            Some(ArchOutcome::Forward {
                function: SMCCC_ARCH_WORKAROUND_1,
                argument: 0
            })
        );
        assert_eq!(
            handle(SMCCC_ARCH_WORKAROUND_2, 1, &firmware),
            Some(ArchOutcome::Return(0)),
            "answered by hv, never forwarded"
        );
        assert_eq!(
            handle(SMCCC_ARCH_WORKAROUND_3, 0, &firmware),
            Some(ArchOutcome::Return(u64::MAX)),
            "not implemented: NOT_SUPPORTED, not forwarded"
        );
        assert_eq!(
            handle(SMCCC_ARCH_SOC_ID, 1, &firmware),
            Some(ArchOutcome::Forward {
                function: SMCCC_ARCH_SOC_ID,
                argument: 1
            })
        );
        assert_eq!(
            handle(SMCCC_ARCH_WORKAROUND_1, 0, &FirmwareArch::NONE),
            Some(ArchOutcome::Return(u64::MAX))
        );
        assert_eq!(handle(smccc::psci::PSCI_VERSION, 0, &firmware), None);
        assert_eq!(handle(0x8000_0003, 0, &firmware), None);
    }

    /// The firmware's SSB mitigation is dynamic (WORKAROUND_2: 0): hv
    /// enables it on the PE at bring-up (the last call `query` makes is
    /// WORKAROUND_2 with w1 = 1), the guest is told 1 (no call needed),
    /// and a guest's WORKAROUND_2(0), which would switch the mitigation
    /// off for the whole PE, hv included, is answered by hv and never
    /// reaches the firmware; so is its WORKAROUND_2(1). A firmware that
    /// reports the call not implemented (-1) or not required (-2) is
    /// never asked to enable it, and the guest's call is NOT_SUPPORTED.
    #[test]
    fn a_guest_cannot_switch_off_the_ssb_mitigation() {
        let (answers, calls) = query_with(smccc_1_1(&[(SMCCC_ARCH_WORKAROUND_2, 0)]), true);
        assert_eq!(answers.workaround_2, 0, "the firmware's answer is kept");
        assert_eq!(calls.last(), Some(&(SMCCC_ARCH_WORKAROUND_2, 1)));
        assert_eq!(
            calls
                .iter()
                .filter(|&&(f, _)| f == SMCCC_ARCH_WORKAROUND_2)
                .count(),
            1
        );
        assert_eq!(arch_features(SMCCC_ARCH_WORKAROUND_2, &answers), 1);
        for w1 in [0, 1, 0xffff_ffff_0000_0000] {
            assert_eq!(
                handle(SMCCC_ARCH_WORKAROUND_2, w1, &answers),
                Some(ArchOutcome::Return(0)),
                "w1 = {w1:#x}"
            );
        }
        for answer in [-1, -2, 1] {
            let (answers, calls) =
                query_with(smccc_1_1(&[(SMCCC_ARCH_WORKAROUND_2, answer)]), true);
            assert!(
                calls.iter().all(|&(f, _)| f != SMCCC_ARCH_WORKAROUND_2),
                "{answer}: {calls:x?}"
            );
            let expected = if answer == 1 { 0 } else { -1i64 as u64 };
            assert_eq!(
                handle(SMCCC_ARCH_WORKAROUND_2, 0, &answers),
                Some(ArchOutcome::Return(expected)),
                "{answer}"
            );
        }
    }
}
