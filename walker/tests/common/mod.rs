//! Test fixtures: guest memory made of owned slots, an independent stage-2
//! table builder (its own index and address encoding, not the walker's),
//! ID register and VTCR builders, and a recording memory wrapper.
#![allow(dead_code)]

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use walker::{
    Endianness, ExposedFeatures, Granule, GuestMemory, IdRegisters, MemoryError, Memslot, Memslots,
    SlotAccess, SlotHint, Stage2Registers, Stage2Walker,
};

/// SplitMix64: reproducible pseudo-random words from a seed.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// One owned memslot.
pub struct Slot {
    pub base: u64,
    pub words: Vec<AtomicU64>,
    pub access: SlotAccess,
}

/// Guest memory: owned slots plus the byte order descriptors are written in.
pub struct Mem {
    pub slots: Vec<Slot>,
    pub endian: Endianness,
}

impl Mem {
    pub fn new(endian: Endianness) -> Self {
        Mem {
            slots: Vec::new(),
            endian,
        }
    }

    pub fn with_slot(mut self, base: u64, bytes: u64, access: SlotAccess) -> Self {
        self.add_slot(base, bytes, access);
        self
    }

    pub fn add_slot(&mut self, base: u64, bytes: u64, access: SlotAccess) {
        let words = (0..bytes / 8).map(|_| AtomicU64::new(0)).collect();
        self.slots.push(Slot {
            base,
            words,
            access,
        });
    }

    fn word(&self, address: u64) -> &AtomicU64 {
        for slot in &self.slots {
            if address >= slot.base && address - slot.base < slot.words.len() as u64 * 8 {
                return &slot.words[((address - slot.base) / 8) as usize];
            }
        }
        panic!("test wrote outside its memory: {address:#x}");
    }

    /// Write a descriptor value in the memory's byte order.
    pub fn write(&self, address: u64, descriptor: u64) {
        let bytes = match self.endian {
            Endianness::Little => descriptor.to_le_bytes(),
            Endianness::Big => descriptor.to_be_bytes(),
        };
        self.word(address)
            .store(u64::from_ne_bytes(bytes), Ordering::SeqCst);
    }

    /// Read a descriptor value in the memory's byte order.
    pub fn read(&self, address: u64) -> u64 {
        let bytes = self.word(address).load(Ordering::SeqCst).to_ne_bytes();
        match self.endian {
            Endianness::Little => u64::from_le_bytes(bytes),
            Endianness::Big => u64::from_be_bytes(bytes),
        }
    }

    /// Run `f` with a [`Memslots`] view of this memory.
    pub fn with<R>(&self, f: impl FnOnce(&Memslots<'_>) -> R) -> R {
        let mut slots: Vec<Memslot<'_>> = self
            .slots
            .iter()
            .map(|s| Memslot::new(s.base, &s.words, s.access))
            .collect();
        let memslots = Memslots::new(&mut slots).expect("valid test memslots");
        f(&memslots)
    }

    /// A deep copy (for comparing batched and single walks that update memory).
    pub fn duplicate(&self) -> Mem {
        Mem {
            slots: self
                .slots
                .iter()
                .map(|s| Slot {
                    base: s.base,
                    words: s
                        .words
                        .iter()
                        .map(|w| AtomicU64::new(w.load(Ordering::SeqCst)))
                        .collect(),
                    access: s.access,
                })
                .collect(),
            endian: self.endian,
        }
    }

    pub fn snapshot(&self) -> Vec<Vec<u64>> {
        self.slots
            .iter()
            .map(|s| s.words.iter().map(|w| w.load(Ordering::SeqCst)).collect())
            .collect()
    }

    pub fn contains(&self, address: u64) -> bool {
        self.slots
            .iter()
            .any(|s| address >= s.base && address - s.base < s.words.len() as u64 * 8)
    }
}

/// Records every address the walker asks for.
pub struct Recording<'a, M> {
    pub inner: &'a M,
    pub reads: RefCell<Vec<u64>>,
    pub batches: RefCell<Vec<Vec<u64>>>,
    pub swaps: RefCell<Vec<u64>>,
    /// For each swap, how many batches came before it.
    pub swaps_after_batches: RefCell<Vec<usize>>,
}

impl<'a, M: GuestMemory> Recording<'a, M> {
    pub fn new(inner: &'a M) -> Self {
        Recording {
            inner,
            reads: RefCell::new(Vec::new()),
            batches: RefCell::new(Vec::new()),
            swaps: RefCell::new(Vec::new()),
            swaps_after_batches: RefCell::new(Vec::new()),
        }
    }
}

impl<M: GuestMemory> GuestMemory for Recording<'_, M> {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        self.reads.borrow_mut().push(address);
        self.inner.read_descriptor(address)
    }

    fn read_descriptors(&self, addresses: &[u64], values: &mut [Result<u64, MemoryError>]) {
        self.batches.borrow_mut().push(addresses.to_vec());
        for (a, v) in addresses.iter().zip(values.iter_mut()) {
            self.reads.borrow_mut().push(*a);
            *v = self.inner.read_descriptor(*a);
        }
    }

    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        self.swaps.borrow_mut().push(address);
        self.swaps_after_batches
            .borrow_mut()
            .push(self.batches.borrow().len());
        self.inner
            .compare_exchange_descriptor(address, current, new)
    }
}

// ---------------------------------------------------------------- registers

/// ID_AA64MMFR0_EL1 with every granule at stage 2 (48-bit), given PARange.
pub fn mmfr0(pa_range: u64) -> u64 {
    // TGran4 = 0 (supported), TGran64 = 0, TGran16 = 1; *_2 = 0 (as stage 1).
    pa_range | (1 << 20)
}

/// ... plus FEAT_LPA2 at stage 2 for 4KB and 16KB.
pub fn mmfr0_lpa2(pa_range: u64) -> u64 {
    mmfr0(pa_range) | (3 << 40) | (3 << 32) | (2 << 36)
}

pub const PA_32: u64 = 0;
pub const PA_36: u64 = 1;
pub const PA_40: u64 = 2;
pub const PA_42: u64 = 3;
pub const PA_44: u64 = 4;
pub const PA_48: u64 = 5;
pub const PA_52: u64 = 6;

/// MMFR1 with HAFDBS and XNX.
pub fn mmfr1(hafdbs: u64, xnx: bool) -> u64 {
    hafdbs | (u64::from(xnx) << 28)
}

/// MMFR2 with ST.
pub fn mmfr2(ttst: bool) -> u64 {
    u64::from(ttst) << 28
}

pub fn features(mmfr0: u64, mmfr1: u64, mmfr2: u64) -> ExposedFeatures {
    ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0,
        mmfr1,
        mmfr2,
    })
    .expect("valid test ID registers")
}

/// Everything on: PARange 48, all granules, HAFDBS 2, XNX, TTST.
pub fn features_48() -> ExposedFeatures {
    features(mmfr0(PA_48), mmfr1(2, true), mmfr2(true))
}

pub fn tg0(granule: Granule) -> u64 {
    match granule {
        Granule::K4 => 0,
        Granule::K64 => 1,
        Granule::K16 => 2,
    }
}

/// VTCR_EL2 from its main fields.
pub fn vtcr(granule: Granule, t0sz: u64, sl0: u64, ps: u64) -> u64 {
    t0sz | (sl0 << 6) | (3 << 8) | (3 << 10) | (3 << 12) | (tg0(granule) << 14) | (ps << 16)
}

pub const VTCR_HA: u64 = 1 << 21;
pub const VTCR_HD: u64 = 1 << 22;
/// FEAT_HAFT: hardware AF in table descriptors.
pub const VTCR_HAFT: u64 = 1 << 44;
pub const VTCR_DS: u64 = 1 << 32;
pub const VTCR_SL2: u64 = 1 << 33;

pub fn walker(vtcr: u64, vttbr: u64, endian: Endianness, f: &ExposedFeatures) -> Stage2Walker {
    Stage2Walker::new(
        Stage2Registers {
            vtcr,
            vttbr,
            endianness: endian,
        },
        f,
    )
}

// ---------------------------------------------------------------- tables

/// How output/table addresses are placed in descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrFormat {
    /// Bits 47:granule.
    Plain,
    /// 64KB with FEAT_LPA: OA[51:48] in bits 15:12.
    Lpa64k,
    /// FEAT_LPA2 (DS=1): OA[49:48] in place, OA[51:50] in bits 9:8.
    Ds,
}

pub fn encode_addr(format: AddrFormat, address: u64) -> u64 {
    let low = address & 0x0000_ffff_ffff_f000;
    match format {
        AddrFormat::Plain => low,
        AddrFormat::Lpa64k => low | (((address >> 48) & 0xf) << 12),
        AddrFormat::Ds => low | (address & (3 << 48)) | (((address >> 50) & 3) << 8),
    }
}

pub fn decode_addr(format: AddrFormat, descriptor: u64, granule: Granule) -> u64 {
    let low = descriptor & 0x0000_ffff_ffff_ffff & !(granule.size() - 1);
    match format {
        AddrFormat::Plain => low,
        AddrFormat::Lpa64k => low | (((descriptor >> 12) & 0xf) << 48),
        AddrFormat::Ds => low | (descriptor & (3 << 48)) | (((descriptor >> 8) & 3) << 50),
    }
}

/// VTTBR_EL2 for a table base in a format.
pub fn vttbr_for(format: AddrFormat, base: u64) -> u64 {
    match format {
        AddrFormat::Plain => base,
        _ => (base & 0x0000_ffff_ffff_ffc0) | (((base >> 48) & 0xf) << 2),
    }
}

/// Normal WB memory, inner shareable, RW, AF set.
pub const LEAF_RW: u64 = (1 << 10) | (3 << 8) | (3 << 6) | (0xf << 2);

/// Builds stage-2 tables in a [`Mem`] by bump allocation, computing indices
/// with its own arithmetic.
pub struct Builder<'m> {
    pub mem: &'m Mem,
    pub granule: Granule,
    pub start_level: i32,
    pub ia_bits: u32,
    pub format: AddrFormat,
    pub root: u64,
    next_free: u64,
    limit: u64,
}

impl<'m> Builder<'m> {
    /// Tables go in [arena, arena + arena_bytes); the root comes first.
    pub fn new(
        mem: &'m Mem,
        granule: Granule,
        start_level: i32,
        ia_bits: u32,
        format: AddrFormat,
        arena: u64,
        arena_bytes: u64,
    ) -> Self {
        let mut b = Builder {
            mem,
            granule,
            start_level,
            ia_bits,
            format,
            root: 0,
            next_free: arena,
            limit: arena + arena_bytes,
        };
        let root_bytes = (b.entries(start_level) * 8).max(64);
        b.root = b.alloc(root_bytes);
        b
    }

    fn stride(&self) -> u32 {
        self.granule.bits() - 3
    }

    pub fn lsb(&self, level: i32) -> u32 {
        self.granule.bits() + (3 - level) as u32 * self.stride()
    }

    pub fn entries(&self, level: i32) -> u64 {
        if level == self.start_level {
            1 << (self.ia_bits - self.lsb(level))
        } else {
            1 << self.stride()
        }
    }

    pub fn alloc(&mut self, bytes: u64) -> u64 {
        let align = bytes.max(self.granule.size());
        let at = self.next_free.div_ceil(align) * align;
        assert!(at + bytes <= self.limit, "test arena exhausted");
        self.next_free = at + bytes;
        at
    }

    pub fn entry_address(&self, table: u64, level: i32, ipa: u64) -> u64 {
        let index = (ipa >> self.lsb(level)) & (self.entries(level) - 1);
        table + index * 8
    }

    /// The table at `level` on `ipa`'s path, creating tables as needed.
    pub fn table_at(&mut self, level: i32, ipa: u64) -> u64 {
        let mut table = self.root;
        for l in self.start_level..level {
            let entry = self.entry_address(table, l, ipa);
            let desc = self.mem.read(entry);
            table = if desc & 3 == 3 {
                decode_addr(self.format, desc, self.granule)
            } else {
                let next = self.alloc(self.granule.size());
                self.mem.write(entry, encode_addr(self.format, next) | 3);
                next
            };
        }
        table
    }

    /// Descriptor address of `ipa` at `level`.
    pub fn slot(&mut self, level: i32, ipa: u64) -> u64 {
        let table = self.table_at(level, ipa);
        self.entry_address(table, level, ipa)
    }

    /// Map `ipa`'s block/page at `level` to `oa` with `attrs` (low/high
    /// attribute bits, no address, no type bits). Returns the leaf address.
    pub fn map(&mut self, level: i32, ipa: u64, oa: u64, attrs: u64) -> u64 {
        let entry = self.slot(level, ipa);
        let kind = if level == 3 { 3 } else { 1 };
        self.mem
            .write(entry, encode_addr(self.format, oa) | attrs | kind);
        entry
    }

    /// Write a raw descriptor at `ipa`'s entry of `level`.
    pub fn put(&mut self, level: i32, ipa: u64, descriptor: u64) -> u64 {
        let entry = self.slot(level, ipa);
        self.mem.write(entry, descriptor);
        entry
    }

    pub fn vttbr(&self) -> u64 {
        vttbr_for(self.format, self.root)
    }
}

// ------------------------------------------------------------ host denial

/// A host (L0) that maps every memslot for the guest but whose own stage 2
/// denies some of the walk's accesses there, page by page (4 KiB): reads
/// of the pages `denies_read` names, compare-and-swaps (which need read
/// and write) of those and of the pages `denies_write` names. It is also
/// in the middle of changing its mapping of some pages (its
/// break-before-make): every access to the pages `changing` names, and
/// the compare-and-swaps of those `changing_writes` names (a change that
/// began between the walk's read and its update), answer
/// [`MemoryError::HostChanging`], before any denial (there is no mapping
/// to deny with). An address the memory itself refuses keeps that error
/// (nothing is mapped there to deny or change).
pub struct HostDenying<'a, M> {
    pub inner: &'a M,
    pub no_read: Vec<u64>,
    pub no_write: Vec<u64>,
    pub changing: Vec<u64>,
    pub changing_writes: Vec<u64>,
    /// Also deny by a hash of the page with this seed: reads of one page
    /// in 16, writes of three more in 16; and change one more page in 16
    /// (every access), and the writes of one more in 16.
    pub seed: Option<u64>,
}

pub const HOST_PAGE: u64 = 0x1000;

/// The host page holding `address`.
pub fn page_of(address: u64) -> u64 {
    address & !(HOST_PAGE - 1)
}

/// Every entry point gives `expected` for `ipa`: walk, walk_hinted,
/// translate_leaf (a lean walk: the same error) and a batch of one.
pub fn every_walk_gives<M: GuestMemory>(
    w: &Stage2Walker,
    memory: &M,
    ipa: u64,
    access: walker::AccessKind,
    expected: &Result<walker::Translation, walker::WalkError>,
) {
    assert_eq!(&w.walk(memory, ipa, access), expected);
    assert_eq!(
        &w.walk_hinted(memory, ipa, access, &mut SlotHint::default()),
        expected
    );
    let lean = w.translate_leaf(memory, ipa, access);
    match expected {
        Ok(t) => assert_eq!(lean, Ok(walker::LeafTranslation::from(t))),
        Err(e) => assert_eq!(lean, Err(*e)),
    }
    let requests = [walker::WalkRequest { ipa, access }];
    let mut results = [Err(walker::WalkError::Contended {
        ipa: 0,
        descriptor_address: 0,
    })];
    w.walk_batch(memory, &requests, &mut results).unwrap();
    assert_eq!(&results[0], expected);
}

impl<'a, M> HostDenying<'a, M> {
    pub fn new(inner: &'a M) -> Self {
        HostDenying {
            inner,
            no_read: Vec::new(),
            no_write: Vec::new(),
            changing: Vec::new(),
            changing_writes: Vec::new(),
            seed: None,
        }
    }

    /// Denying by the hash of `seed` only (nothing with `None`).
    pub fn seeded(inner: &'a M, seed: Option<u64>) -> Self {
        HostDenying {
            seed,
            ..HostDenying::new(inner)
        }
    }

    fn hash(&self, address: u64) -> Option<u64> {
        self.seed
            .map(|seed| SplitMix(seed ^ (address / HOST_PAGE)).next() % 16)
    }

    pub fn denies_read(&self, address: u64) -> bool {
        let page = address & !(HOST_PAGE - 1);
        self.no_read.contains(&page) || self.hash(address) == Some(0)
    }

    /// Every access to `address` meets the host's change.
    pub fn changing(&self, address: u64) -> bool {
        let page = address & !(HOST_PAGE - 1);
        self.changing.contains(&page) || self.hash(address) == Some(4)
    }

    /// A compare-and-swap at `address` meets the host's change.
    pub fn changing_write(&self, address: u64) -> bool {
        let page = address & !(HOST_PAGE - 1);
        self.changing(address)
            || self.changing_writes.contains(&page)
            || self.hash(address) == Some(5)
    }

    pub fn denies_write(&self, address: u64) -> bool {
        let page = address & !(HOST_PAGE - 1);
        self.denies_read(address)
            || self.no_write.contains(&page)
            || self.hash(address).is_some_and(|h| (1..4).contains(&h))
    }
}

impl<M> HostDenying<'_, M> {
    /// The host's answer to a read of `address` the memory backs.
    fn read_answer(&self, address: u64) -> Result<(), MemoryError> {
        if self.changing(address) {
            Err(MemoryError::HostChanging)
        } else if self.denies_read(address) {
            Err(MemoryError::HostDenied)
        } else {
            Ok(())
        }
    }
}

impl<M: GuestMemory> GuestMemory for HostDenying<'_, M> {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        let value = self.inner.read_descriptor(address)?;
        self.read_answer(address)?;
        Ok(value)
    }

    fn read_descriptor_hinted(
        &self,
        address: u64,
        hint: &mut SlotHint,
    ) -> Result<u64, MemoryError> {
        let value = self.inner.read_descriptor_hinted(address, hint)?;
        self.read_answer(address)?;
        Ok(value)
    }

    fn read_descriptors(&self, addresses: &[u64], values: &mut [Result<u64, MemoryError>]) {
        self.inner.read_descriptors(addresses, values);
        for (address, value) in addresses.iter().zip(values.iter_mut()) {
            if value.is_ok() {
                if let Err(error) = self.read_answer(*address) {
                    *value = Err(error);
                }
            }
        }
    }

    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        // Only where the memory backs the address (a read tells).
        self.inner.read_descriptor(address)?;
        if self.changing_write(address) {
            return Err(MemoryError::HostChanging);
        }
        if self.denies_write(address) {
            return Err(MemoryError::HostDenied);
        }
        self.inner
            .compare_exchange_descriptor(address, current, new)
    }
}
