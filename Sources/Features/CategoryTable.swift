// An open-addressing hash table keyed by (categorical field, category bytes).
//
// Used twice: by `FeatureStatsBuilder` to count categories, and by `FeatureStats`/`FeatureEncoder`
// to map a category to its global id. Keys live in one byte arena, so millions of categories
// cost a handful of large arrays instead of millions of small allocations, and a lookup by
// `UnsafeRawBufferPointer` allocates nothing.
//
// Memory per entry: key bytes + ~45 bytes (offset, length, field, id, count, 2 slots at ≤ 50% load).
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

/// (field, bytes) → entry index, with an id and a count per entry.
public struct CategoryTable: Sendable {
    /// 0 = empty; otherwise (hash tag << 32) | (entry index + 1).
    @usableFromInline var slots: [UInt64]
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
        slots = [UInt64](repeating: 0, count: cap)
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

    /// Entry index for (field, bytes), or nil.

    public func find(field: Int, bytes: UnsafeRawBufferPointer) -> Int? {
        let h = categoryHash(field: field, bytes.baseAddress, bytes.count)
        return find(field: field, bytes: bytes, hash: h)
    }


    func find(field: Int, bytes: UnsafeRawBufferPointer, hash h: UInt64) -> Int? {
        let tag = h >> 32
        let n = bytes.count
        return slots.withUnsafeBufferPointer { slots in
            arena.withUnsafeBytes { arena in
                var idx = Int(truncatingIfNeeded: h) & mask
                while true {
                    let s = slots[idx]
                    if s == 0 { return nil }
                    if s >> 32 == tag {
                        let e = Int(s & 0xFFFF_FFFF) - 1
                        if Int(fields[e]) == field && Int(lengths[e]) == n
                            && (n == 0 || memcmp(arena.baseAddress! + starts[e], bytes.baseAddress!, n) == 0) {
                            return e
                        }
                    }
                    idx = (idx + 1) & mask
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
            place(entry: e, hash: h)
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
    mutating func place(entry e: Int, hash h: UInt64) {
        var idx = Int(truncatingIfNeeded: h) & mask
        while slots[idx] != 0 { idx = (idx + 1) & mask }
        slots[idx] = (h >> 32) << 32 | UInt64(e + 1)
    }

    @usableFromInline
    mutating func rehash(capacity: Int) {
        slots = [UInt64](repeating: 0, count: capacity)
        mask = capacity - 1
        let arenaCopy = arena
        arenaCopy.withUnsafeBytes { a in
            for e in 0..<fields.count {
                let h = categoryHash(field: Int(fields[e]), a.baseAddress.map { $0 + starts[e] }, Int(lengths[e]))
                place(entry: e, hash: h)
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
