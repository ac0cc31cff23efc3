// An open-addressing hash table keyed by (categorical field, category bytes).
//
// Used twice: by `FeatureStatsBuilder` to count categories, and by `FeatureStats`/`FeatureEncoder`
// to map a category to its global id. Keys live in one byte arena, so millions of categories
// cost a handful of large arrays instead of millions of small allocations, and a lookup by
// `UnsafeRawBufferPointer` allocates nothing.
//
// Memory per entry: key bytes + ~53 bytes (offset, length, field, id, count, 2 16-byte slots at
// ≤ 50% load). A slot holds the key's first 8 bytes, so keys of ≤ 8 bytes never touch the arena.
// The hash is a fixed (unseeded) multiply-rotate hash: deterministic, not flood-resistant.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Hash of a categorical field's bytes, salted by the field index.
@inline(__always)
@usableFromInline
func categoryHash(field: Int, _ p: UnsafeRawPointer?, _ n: Int) -> UInt64 {
    let k: UInt64 = 0x9E37_79B9_7F4A_7C15
    var h = (UInt64(truncatingIfNeeded: field) &+ 1) &* 0xC2B2_AE3D_27D4_EB4F ^ (UInt64(truncatingIfNeeded: n) &* k)
    var i = 0
    if let p {
        while i + 8 <= n {
            let w = p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            h = ((h ^ w) &* k)
            h = (h << 29) | (h >> 35)
            i += 8
        }
        if i < n {
            var w: UInt64 = 0
            var s: UInt64 = 0
            while i < n {
                w |= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << s
                s += 8
                i += 1
            }
            h = ((h ^ w) &* k)
            h = (h << 29) | (h >> 35)
        }
    }
    // fmix64 (MurmurHash3 finaliser)
    h ^= h >> 33
    h = h &* 0xFF51_AFD7_ED55_8CCD
    h ^= h >> 33
    h = h &* 0xC4CE_B9FE_1A85_EC53
    h ^= h >> 33
    return h
}

/// One open-addressing slot: the key's first 8 bytes inline, so the common short key (Criteo's
/// categories are 8 hex characters) is matched with one cache line and no arena access.
@usableFromInline
struct CategorySlot: Sendable {
    /// 0 = empty; otherwise entry index + 1.
    @usableFromInline var entry: UInt32
    /// field | min(length, 255) << 8 | hash tag << 16.
    @usableFromInline var meta: UInt32
    /// The key's first min(length, 8) bytes, little-endian, zero-padded.
    @usableFromInline var head: UInt64
    @inlinable init(entry: UInt32, meta: UInt32, head: UInt64) { self.entry = entry; self.meta = meta; self.head = head }
}

/// (field, bytes) → entry index, with an id and a count per entry.
public struct CategoryTable: Sendable {
    @usableFromInline var slots: [CategorySlot]
    @usableFromInline var mask: Int
    @usableFromInline var arena: [UInt8] = []
    @usableFromInline var starts: [Int] = []
    @usableFromInline var lengths: [UInt32] = []
    @usableFromInline var fields: [UInt8] = []
    /// Global id of each entry (meaningful in `FeatureStats`; 0 in a builder's counting table).
    public internal(set) var ids: [Int32] = []
    /// Occurrence count of each entry.
    public internal(set) var counts: [Int64] = []

    public init(minimumCapacity: Int = 1024) {
        var cap = 16
        while cap < minimumCapacity * 2 { cap <<= 1 }
        slots = [CategorySlot](repeating: CategorySlot(entry: 0, meta: 0, head: 0), count: cap)
        mask = cap - 1
    }

    /// Number of entries.
    public var count: Int { fields.count }

    /// The field (0..<26) of entry `e`.
    public func field(at e: Int) -> Int { Int(fields[e]) }

    /// The category bytes of entry `e`.
    public func bytes(at e: Int) -> ArraySlice<UInt8> {
        arena[starts[e]..<(starts[e] + Int(lengths[e]))]
    }

    @inline(__always)
    static func head(_ p: UnsafeRawPointer?, _ n: Int) -> UInt64 {
        guard let p, n > 0 else { return 0 }
        if n >= 8 { return UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)) }
        var w: UInt64 = 0
        for i in 0..<n { w |= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << (8 * UInt64(i)) }
        return w
    }

    @inline(__always)
    static func meta(field: Int, length n: Int, hash h: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: field) & 0xFF | UInt32(min(n, 255)) << 8 | UInt32(truncatingIfNeeded: h >> 48) << 16
    }

    /// Entry index for (field, bytes), or nil.
    @inline(__always)
    public func find(field: Int, bytes: UnsafeRawBufferPointer) -> Int? {
        let h = categoryHash(field: field, bytes.baseAddress, bytes.count)
        return find(field: field, bytes: bytes, hash: h)
    }

    @inline(__always)
    func find(field: Int, bytes: UnsafeRawBufferPointer, hash h: UInt64) -> Int? {
        let n = bytes.count
        let meta = Self.meta(field: field, length: n, hash: h)
        let head = Self.head(bytes.baseAddress, n)
        return slots.withUnsafeBufferPointer { slots in
            var idx = Int(truncatingIfNeeded: h) & mask
            while true {
                let s = slots[idx]
                if s.entry == 0 { return nil }
                if s.meta == meta && s.head == head {
                    let e = Int(s.entry) - 1
                    if n <= 8 { return e }
                    let same = arena.withUnsafeBytes { arena in
                        Int(lengths[e]) == n && memcmp(arena.baseAddress! + starts[e], bytes.baseAddress!, n) == 0
                    }
                    if same { return e }
                }
                idx = (idx + 1) & mask
            }
        }
    }

    /// Looks up the keys (field j, bytes base[keyStarts[j]..<keyEnds[j]]) for j = 0..<n at once and
    /// writes each entry index, or -1, to `out[j]`. Every key's home slot is loaded before any key
    /// is compared, so with a dictionary larger than the cache the ~n misses overlap instead of
    /// following one another (measured: the largest cost of encoding a row before this).
    func findAll(_ n: Int, base: UnsafeRawPointer, keyStarts: UnsafePointer<Int32>, keyEnds: UnsafePointer<Int32>,
                 into out: UnsafeMutablePointer<Int32>) {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 2 * n) { tmp in
            let hashes = tmp.baseAddress!, heads = hashes + n
            slots.withUnsafeBufferPointer { slots in
                var touched: UInt32 = 0
                for j in 0..<n {
                    let p = base + Int(keyStarts[j]), len = Int(keyEnds[j] - keyStarts[j])
                    let h = categoryHash(field: j, p, len)
                    hashes[j] = h
                    heads[j] = Self.head(p, len)
                    touched &+= slots[Int(truncatingIfNeeded: h) & mask].meta
                }
                // A use of the loaded values, so the optimiser keeps the loads; the second pass
                // overwrites out[0] whatever happens here.
                if touched == 1 { out[0] = -2 }
                for j in 0..<n {
                    let p = base + Int(keyStarts[j]), len = Int(keyEnds[j] - keyStarts[j])
                    let h = hashes[j]
                    let meta = Self.meta(field: j, length: len, hash: h)
                    var idx = Int(truncatingIfNeeded: h) & mask
                    var found: Int32 = -1
                    while true {
                        let s = slots[idx]
                        if s.entry == 0 { break }
                        if s.meta == meta && s.head == heads[j] {
                            let e = Int(s.entry) - 1
                            if len <= 8 || arena.withUnsafeBytes({ a in
                                Int(lengths[e]) == len && memcmp(a.baseAddress! + starts[e], p, len) == 0 }) {
                                found = Int32(e); break
                            }
                        }
                        idx = (idx + 1) & mask
                    }
                    out[j] = found
                }
            }
        }
    }

    /// Entry index for (field, bytes), inserting a new entry (id 0, count 0) when absent.

    public mutating func findOrInsert(field: Int, bytes: UnsafeRawBufferPointer) -> (index: Int, inserted: Bool) {
        precondition(field >= 0 && field < 256)
        let h = categoryHash(field: field, bytes.baseAddress, bytes.count)
        if let e = find(field: field, bytes: bytes, hash: h) { return (e, false) }
        let e = fields.count
        starts.append(arena.count)
        arena.append(contentsOf: bytes)
        lengths.append(UInt32(bytes.count))
        fields.append(UInt8(field))
        ids.append(0)
        counts.append(0)
        if (e + 1) * 2 > slots.count {
            rehash(capacity: slots.count * 2)
        } else {
            place(entry: e, hash: h, head: Self.head(bytes.baseAddress, bytes.count))
        }
        return (e, true)
    }

    /// Adds `by` to the count of (field, bytes), inserting it if needed. Returns the entry index.
    @discardableResult
    public mutating func addCount(field: Int, bytes: UnsafeRawBufferPointer, by: Int64 = 1) -> Int {
        let e = findOrInsert(field: field, bytes: bytes).index
        counts[e] += by
        return e
    }

    @usableFromInline mutating func setId(_ id: Int32, at e: Int) { ids[e] = id }
    @usableFromInline mutating func setCount(_ c: Int64, at e: Int) { counts[e] = c }

    @usableFromInline
    mutating func place(entry e: Int, hash h: UInt64, head: UInt64) {
        var idx = Int(truncatingIfNeeded: h) & mask
        while slots[idx].entry != 0 { idx = (idx + 1) & mask }
        slots[idx] = CategorySlot(entry: UInt32(e + 1), meta: Self.meta(field: Int(fields[e]), length: Int(lengths[e]), hash: h), head: head)
    }

    @usableFromInline
    mutating func rehash(capacity: Int) {
        slots = [CategorySlot](repeating: CategorySlot(entry: 0, meta: 0, head: 0), count: capacity)
        mask = capacity - 1
        let arenaCopy = arena
        arenaCopy.withUnsafeBytes { a in
            for e in 0..<fields.count {
                let p = a.baseAddress.map { $0 + starts[e] }
                let n = Int(lengths[e])
                place(entry: e, hash: categoryHash(field: Int(fields[e]), p, n), head: Self.head(p, n))
            }
        }
    }

    /// Reserves room for `n` entries and `bytes` key bytes in total.
    public mutating func reserve(entries n: Int, keyBytes: Int) {
        arena.reserveCapacity(keyBytes)
        starts.reserveCapacity(n); lengths.reserveCapacity(n); fields.reserveCapacity(n)
        ids.reserveCapacity(n); counts.reserveCapacity(n)
        if n * 2 > slots.count {
            var cap = slots.count
            while cap < n * 2 { cap <<= 1 }
            rehash(capacity: cap)
        }
    }

    /// Compares the key bytes of two entries (unsigned lexicographic).
    func compareBytes(_ a: Int, _ b: Int) -> Int32 {
        arena.withUnsafeBytes { ar in
            let la = Int(lengths[a]), lb = Int(lengths[b])
            let m = min(la, lb)
            if m > 0 {
                let c = memcmp(ar.baseAddress! + starts[a], ar.baseAddress! + starts[b], m)
                if c != 0 { return c < 0 ? -1 : 1 }
            }
            return la == lb ? 0 : (la < lb ? -1 : 1)
        }
    }
}
