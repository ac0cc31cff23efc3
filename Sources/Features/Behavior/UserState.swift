// UserState: what the behaviour pipeline keeps per user (in sr:rl:user, committed with the
// featurize progress) and what /v1/recommend reads: the recent items, the length of the user's
// consumed-items list (sr:rl:consumed:{user}), and the newest event whose transition is not
// emitted yet.

/// One user's state. Items are item ids (`BehaviorIdSpace.items`).
public struct UserState: Sendable, Equatable {
    /// The last H+1 items consumed, oldest first (H+1 so the pending event's state — the H items
    /// before it — can be rebuilt). `recent(_:)` is the state a policy sees.
    public var history: [Int32] = []
    /// Entries in the user's consumed-items list (sr:rl:consumed:{user}, one item id per event,
    /// oldest first). It grows by one per event; on reaching 2C it is cut to the last C, so it
    /// always holds the user's last C events' items or more, and writing it costs one append per
    /// event rather than a rewrite of C items. The consumed set is the distinct items of the last C.
    public var consumedLength: Int = 0
    /// The newest event (its action is `history.last`) while its transition waits for the
    /// user's next event or the event-time watermark.
    public var pending: Pending? = nil

    public struct Pending: Sendable, Equatable {
        public var time: Int64
        public var reward: Float
        public init(time: Int64, reward: Float) { self.time = time; self.reward = reward }
    }

    public init(history: [Int32] = [], consumedLength: Int = 0, pending: Pending? = nil) {
        self.history = history; self.consumedLength = consumedLength; self.pending = pending
    }

    /// The last `h` items, oldest first (fewer when the user has consumed fewer).
    public func recent(_ h: Int) -> ArraySlice<Int32> { history.suffix(h) }

    /// Adds a consumed item to the history (keeping `h + 1`) and counts its entry in the consumed
    /// list. Returns true when the list is cut to the last `limit` entries at this event.
    @discardableResult
    public mutating func consume(_ item: Int32, historyLength h: Int, consumedLimit limit: Int) -> Bool {
        history.append(item)
        if history.count > h + 1 { history.removeFirst(history.count - (h + 1)) }
        consumedLength += 1
        if consumedLength >= 2 * limit { consumedLength = limit; return true }
        return false
    }

    /// The state before the newest item: the `h` items before `history.last`, padded in front
    /// with `TransitionBatch.paddingItem`.
    public func stateBeforeLast(_ h: Int, into out: inout [Int32]) {
        out.removeAll(keepingCapacity: true)
        let before = history.dropLast().suffix(h)
        for _ in 0..<(h - before.count) { out.append(TransitionBatch.paddingItem) }
        out.append(contentsOf: before)
    }

    // MARK: Encoding (little-endian)
    //   u8 version = 2, u8 history count, u8 pending flag, u32 consumed-list length,
    //   [i64 pending time, f32 pending reward], i32 history[]

    public func encoded() -> [UInt8] {
        let n = 7 + (pending == nil ? 0 : 12) + 4 * min(history.count, 255)
        return [UInt8](unsafeUninitializedCapacity: n) { buf, count in
            buf[0] = 2
            buf[1] = UInt8(clamping: history.count)
            buf[2] = pending == nil ? 0 : 1
            var p = 3
            func put<T: FixedWidthInteger>(_ v: T) {
                var x = v.littleEndian
                withUnsafeBytes(of: &x) { for b in $0 { buf[p] = b; p += 1 } }
            }
            put(UInt32(clamping: consumedLength))
            if let pending { put(pending.time); put(pending.reward.bitPattern) }
            for v in history.prefix(255) { put(v) }
            count = p
        }
    }

    /// Decodes `encoded()`; throws a message naming what is wrong.
    public static func decode(_ bytes: [UInt8]) throws(UserStateError) -> UserState {
        guard bytes.count >= 7, bytes[0] == 2 else {
            throw UserStateError("user state of \(bytes.count) bytes with version \(bytes.first.map(String.init) ?? "none") (expected version 2)")
        }
        let h = Int(bytes[1]), hasPending = bytes[2] == 1
        let expected = 7 + (hasPending ? 12 : 0) + 4 * h
        guard bytes.count == expected, bytes[2] <= 1 else {
            throw UserStateError("user state of \(bytes.count) bytes, its header describes \(expected)")
        }
        var p = 3
        func i64() -> Int64 { var v: Int64 = 0; for k in 0..<8 { v |= Int64(bytes[p + k]) << (8 * Int64(k)) }; p += 8; return v }
        func u32() -> UInt32 { var v: UInt32 = 0; for k in 0..<4 { v |= UInt32(bytes[p + k]) << (8 * UInt32(k)) }; p += 4; return v }
        var s = UserState()
        s.consumedLength = Int(u32())
        if hasPending {
            let t = i64()
            s.pending = Pending(time: t, reward: Float(bitPattern: u32()))
        }
        s.history = (0..<h).map { _ in Int32(bitPattern: u32()) }
        return s
    }
}

public struct UserStateError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

/// Decimal digits of `v` (ids, counts and scores in Redis arguments), without a String.
public func decimalBytes(_ v: Int64) -> [UInt8] {
    if v == 0 { return [0x30] }
    var x = v.magnitude
    var digits: [UInt8] = []
    digits.reserveCapacity(20)
    while x > 0 { digits.append(UInt8(x % 10) + 0x30); x /= 10 }
    if v < 0 { digits.append(0x2D) }
    digits.reverse()
    return digits
}
