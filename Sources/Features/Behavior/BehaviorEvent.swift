// Behaviour events: FlinkRL/DBRL's Tianchi `user_behavior.csv` lines, `user,item,behavior,time`
// (headerless; behavior ∈ pv, cart, fav, buy; time = integer Unix seconds; ids opaque strings).

/// What a user did with an item.
public enum Behavior: UInt8, Sendable, CaseIterable, Hashable, CustomStringConvertible {
    case pv = 0, cart, fav, buy
    public var name: String { ["pv", "cart", "fav", "buy"][Int(rawValue)] }
    public var description: String { name }
    public init?(name: some StringProtocol) {
        guard let b = Behavior.allCases.first(where: { $0.name == name }) else { return nil }
        self = b
    }
}

/// One parsed event; `user` and `item` are byte ranges of the parsed line (no copies).
public struct BehaviorEvent: Sendable, Equatable {
    public var user: Range<Int>
    public var item: Range<Int>
    public var behavior: Behavior
    /// Unix seconds.
    public var time: Int64

    public init(user: Range<Int>, item: Range<Int>, behavior: Behavior, time: Int64) {
        self.user = user; self.item = item; self.behavior = behavior; self.time = time
    }
}

/// Parses one event per line. Immutable: share one parser across threads.
public struct BehaviorParser: Sendable {
    /// Longer lines are refused (`line_too_long`): ids are short; a huge line is not an event.
    public var maxLineLength: Int
    public init(maxLineLength: Int = 4096) { self.maxLineLength = maxLineLength }

    /// Parses `line` (a trailing "\n" or "\r\n" is ignored). Throws the reason a line is refused.
    public func parse(_ line: UnsafeRawBufferPointer) throws(RowRejection) -> BehaviorEvent {
        var n = line.count
        if n > 0 && line[n - 1] == 0x0A { n -= 1 }
        if n > 0 && line[n - 1] == 0x0D { n -= 1 }
        if n == 0 { throw RowRejection(.emptyLine, "empty line") }
        if n > maxLineLength { throw RowRejection(.lineTooLong, "line of \(n) bytes, more than \(maxLineLength)") }
        // Field boundaries: exactly 3 commas.
        var commas = (0, 0, 0)
        var found = 0
        for i in 0..<n {
            let c = line[i]
            if c == 0x2C {
                switch found {
                case 0: commas.0 = i
                case 1: commas.1 = i
                case 2: commas.2 = i
                default: throw RowRejection(.wrongFieldCount, "more than 4 comma-separated fields (expected user,item,behavior,time)")
                }
                found += 1
            } else if c == 0x0A || c == 0x0D {
                throw RowRejection(.embeddedNewline, "a line break inside the event at byte \(i)")
            }
        }
        guard found == 3 else {
            throw RowRejection(.missingField, "\(found + 1) comma-separated field(s), expected 4: user,item,behavior,time")
        }
        let user = 0..<commas.0, item = (commas.0 + 1)..<commas.1
        if user.isEmpty { throw RowRejection(.emptyId, "empty user id") }
        if item.isEmpty { throw RowRejection(.emptyId, "empty item id") }
        let behavior: Behavior
        switch (commas.2 - commas.1 - 1, line[commas.1 + 1]) {
        case (2, UInt8(ascii: "p")) where line[commas.1 + 2] == UInt8(ascii: "v"): behavior = .pv
        case (3, UInt8(ascii: "b")) where line[commas.1 + 2] == UInt8(ascii: "u") && line[commas.1 + 3] == UInt8(ascii: "y"): behavior = .buy
        case (3, UInt8(ascii: "f")) where line[commas.1 + 2] == UInt8(ascii: "a") && line[commas.1 + 3] == UInt8(ascii: "v"): behavior = .fav
        case (4, UInt8(ascii: "c")) where line[commas.1 + 2] == UInt8(ascii: "a") && line[commas.1 + 3] == UInt8(ascii: "r")
                                          && line[commas.1 + 4] == UInt8(ascii: "t"): behavior = .cart
        default:
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: line[(commas.1 + 1)..<commas.2]).prefix(32), as: UTF8.self)
            throw RowRejection(.unknownBehavior, "behaviour \"\(text)\" is not one of pv, cart, fav, buy")
        }
        let t = (commas.2 + 1)..<n
        guard !t.isEmpty, t.count <= 18 else {
            throw RowRejection(.badTime, t.isEmpty ? "empty time" : "time of \(t.count) digits is not Unix seconds")
        }
        var time: Int64 = 0
        for i in t {
            let d = line[i] &- 0x30
            guard d < 10 else {
                let text = String(decoding: UnsafeRawBufferPointer(rebasing: line[t]).prefix(32), as: UTF8.self)
                throw RowRejection(.badTime, "time \"\(text)\" is not a non-negative integer (Unix seconds)")
            }
            time = time * 10 + Int64(d)
        }
        return BehaviorEvent(user: user, item: item, behavior: behavior, time: time)
    }

    public func parse(_ line: String) throws(RowRejection) -> BehaviorEvent {
        var s = line
        let r: Result<BehaviorEvent, RowRejection> = s.withUTF8 { buf in
            do throws(RowRejection) { return .success(try parse(UnsafeRawBufferPointer(buf))) } catch { return .failure(error) }
        }
        return try r.get()
    }
}

/// A worker's local map of one behaviour id space (users or items): id bytes → id, and back.
/// Filled from the shared online dictionary in Redis (`FeatureStore.behaviorIds`); not thread-safe
/// for writes (the worker thread learns ids while no handler runs; handlers only read).
public struct BehaviorIdCache: Sendable {
    var table = CategoryTable(minimumCapacity: 4096)
    /// id → its entry in `table` (the key bytes are stored once, in the table).
    var entryOfId: [Int32: Int32] = [:]
    public init() {}

    public var count: Int { table.count }

    @inline(__always)
    public func id(of bytes: UnsafeRawBufferPointer) -> Int32? {
        table.find(field: 0, bytes: bytes).map { table.ids[$0] }
    }

    public func bytes(ofId id: Int32) -> [UInt8]? { entryOfId[id].map { Array(table.bytes(at: Int($0))) } }

    /// Calls `body` with the key bytes of `id` (its decimal digits when unknown).
    @inline(__always)
    public func withBytes<R>(ofId id: Int32, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let e = entryOfId[id] { return table.bytes(at: Int(e)).withUnsafeBytes(body) }
        return Array("\(id)".utf8).withUnsafeBytes(body)
    }

    public mutating func learn(_ bytes: UnsafeRawBufferPointer, id: Int32) {
        let e = table.findOrInsert(field: 0, bytes: bytes).index
        table.setId(id, at: e)
        entryOfId[id] = Int32(e)
    }
}

/// Event-time buckets of the popular-items window.
public enum EventTime {
    /// The slide bucket of `time`: ⌊time / slide⌋ (rounding down for negative times too).
    @inline(__always)
    public static func bucket(_ time: Int64, slide: Int64) -> Int64 {
        let q = time / slide
        return (time % slide != 0 && (time < 0) != (slide < 0)) ? q - 1 : q
    }
}
