// PopularBucket: one partition's item counts in one slide bucket of the popular-items window, as
// one Redis string (sr:rl:pop:{bucket}:{topic}:{p}). The partition's owner keeps the counts of
// the buckets it can still add to in memory and rewrites a touched bucket whole in its unit's
// commit: one SET per bucket instead of a read-modify-write per item, because in the commit script
// every argument costs far more than its bytes. Readers sum the buckets of the window over all
// partitions.
//
// Encoding (little-endian): u8 version = 1, then per item: u16 key length, key bytes, u64 count.

public enum PopularBucket {
    public static let version: UInt8 = 1

    /// Appends one (item key, count) entry; `out` must start with `header`.
    @inline(__always)
    public static func append(key: UnsafeRawBufferPointer, count: Int64, to out: inout [UInt8]) {
        let n = min(key.count, Int(UInt16.max))
        out.append(UInt8(truncatingIfNeeded: n)); out.append(UInt8(truncatingIfNeeded: n >> 8))
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: key.prefix(n)))
        withUnsafeBytes(of: UInt64(bitPattern: count).littleEndian) { out.append(contentsOf: $0) }
    }

    public static var header: [UInt8] { [version] }

    /// The entries of an encoded bucket, in stored order.
    public static func decode(_ bytes: [UInt8]) throws(PopularBucketError) -> [(key: [UInt8], count: Int64)] {
        guard let v = bytes.first, v == version else {
            throw PopularBucketError("popular bucket of \(bytes.count) bytes with version \(bytes.first.map(String.init) ?? "none") (expected \(version))")
        }
        var out: [(key: [UInt8], count: Int64)] = []
        var p = 1
        while p < bytes.count {
            guard p + 2 <= bytes.count else { throw PopularBucketError("popular bucket truncated at byte \(p) of \(bytes.count)") }
            let n = Int(bytes[p]) | Int(bytes[p + 1]) << 8
            guard p + 2 + n + 8 <= bytes.count else { throw PopularBucketError("popular bucket truncated at byte \(p) of \(bytes.count)") }
            let key = Array(bytes[(p + 2)..<(p + 2 + n)])
            var c: UInt64 = 0
            for k in 0..<8 { c |= UInt64(bytes[p + 2 + n + k]) << (8 * UInt64(k)) }
            guard let count = Int64(exactly: c), count > 0 else {
                throw PopularBucketError("popular bucket entry at byte \(p) has count \(c) (expected 1…\(Int64.max))")
            }
            out.append((key, count))
            p += 2 + n + 8
        }
        return out
    }
}

public struct PopularBucketError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
