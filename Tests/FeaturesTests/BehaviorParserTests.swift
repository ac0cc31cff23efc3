import Features
import Testing

@Suite("behaviour events: parser and user state")
struct BehaviorParserTests {
    @Test("valid lines parse (Tianchi format, CRLF, opaque ids)")
    func valid() throws {
        let p = BehaviorParser()
        for (line, behavior, time) in [("1,2268318,pv,1511544070", Behavior.pv, Int64(1_511_544_070)), ("u x,ité,buy,0\r\n", .buy, 0),
                                       ("a,b,cart,42\n", .cart, 42), ("a,b,fav,7", .fav, 7)] {
            let e = try p.parse(line)
            #expect(e.behavior == behavior && e.time == time)
            var s = line
            let (u, i) = s.withUTF8 { b in (String(decoding: b[e.user], as: UTF8.self), String(decoding: b[e.item], as: UTF8.self)) }
            #expect(u == String(line.split(separator: ",")[0]) && i == String(line.split(separator: ",")[1]))
        }
    }

    @Test("every refusal has its reason")
    func refusals() {
        let cases: [(RejectReason, String)] = [
            (.emptyLine, ""), (.emptyLine, "\n"), (.lineTooLong, "u,i,pv," + String(repeating: "1", count: 5000)),
            (.embeddedNewline, "u,i\r,pv,1"), (.wrongFieldCount, "u,i,pv,1,extra"), (.missingField, "u,i,pv"), (.missingField, "u"),
            (.emptyId, ",i,pv,1"), (.emptyId, "u,,pv,1"), (.unknownBehavior, "u,i,click,1"), (.unknownBehavior, "u,i,PV,1"),
            (.unknownBehavior, "u,i,,1"), (.badTime, "u,i,pv,"), (.badTime, "u,i,pv,-5"), (.badTime, "u,i,pv,1.5"), (.badTime, "u,i,pv,1e9"),
            (.badTime, "u,i,pv," + String(repeating: "9", count: 30)),
        ]
        for (reason, line) in cases {
            do { _ = try BehaviorParser().parse(line); Issue.record("accepted \(line.prefix(40))") } catch {
                #expect(error.reason == reason, "\(line.prefix(40)): \(error)")
            }
        }
        #expect(Set(cases.map(\.0)) == Set(RejectReason.behavior))
    }

    @Test("user state: history keeps H+1, consumed keeps C distinct (re-consumed moves last), encoding round-trips")
    func userState() throws {
        var s = UserState()
        for item: Int32 in [5, 6, 7, 5, 8, 9] { s.consume(item, historyLength: 3, consumedLimit: 4) }
        #expect(s.history == [7, 5, 8, 9])
        #expect(s.recent(3) == [5, 8, 9])
        #expect(s.consumed == [7, 5, 8, 9])
        var state: [Int32] = []
        s.stateBeforeLast(3, into: &state)
        #expect(state == [7, 5, 8])
        var short = UserState(); short.consume(4, historyLength: 3, consumedLimit: 4); short.consume(6, historyLength: 3, consumedLimit: 4)
        short.stateBeforeLast(3, into: &state)
        #expect(state == [0, 0, 4])
        s.pending = [.init(time: 1_700_000_123, reward: 2.5)]
        #expect(try UserState.decode(s.encoded()) == s)
        #expect(try UserState.decode(UserState().encoded()) == UserState())
        #expect(throws: UserStateError.self) { _ = try UserState.decode(Array(s.encoded().dropLast())) }
        #expect(throws: UserStateError.self) { _ = try UserState.decode([3, 0, 0, 0, 0]) }
        #expect(decimalBytes(0) == Array("0".utf8) && decimalBytes(-1234) == Array("-1234".utf8) && decimalBytes(Int64.max) == Array("\(Int64.max)".utf8))
    }

    @Test("user state version 2: a queue of pending events and H+W items round-trip; version 1 decodes as a queue of one")
    func userStateVersions() throws {
        var s = UserState()
        for item: Int32 in [5, 6, 7, 5, 8, 9, 10] { s.consume(item, historyLength: 3, rewardWindow: 3, consumedLimit: 4) }
        #expect(s.history == [6, 7, 5, 8, 9, 10])   // H + W = 6 of the 7 consumed
        s.pending = [.init(time: 10, reward: 1), .init(time: -3, reward: 2.5), .init(time: Int64.max, reward: -0.5)]
        let bytes = s.encoded()
        #expect(bytes[0] == 2 && bytes[4] == 3 && bytes.count == 5 + 3 * 12 + 4 * (s.history.count + s.consumed.count))
        #expect(try UserState.decode(bytes) == s)
        var state: [Int32] = []
        s.stateBefore(2, 3, into: &state)
        #expect(state == [0, 6, 7])
        // Version 1, written by featurize before reward windows: version, H count, C count, pending flag,
        // [i64 time, f32 reward], history, consumed.
        func v1(pending: (Int64, Float)?, history: [Int32], consumed: [Int32]) -> [UInt8] {
            var b: [UInt8] = [1, UInt8(history.count), UInt8(consumed.count), 0, pending == nil ? 0 : 1]
            func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
            if let (t, r) = pending { put(t); put(r.bitPattern) }
            for v in history { put(v) }
            for v in consumed { put(v) }
            return b
        }
        #expect(try UserState.decode(v1(pending: (1_700_000_123, 2), history: [4, 5, 6], consumed: [6, 4, 5]))
                == UserState(history: [4, 5, 6], consumed: [6, 4, 5], pending: [.init(time: 1_700_000_123, reward: 2)]))
        #expect(try UserState.decode(v1(pending: nil, history: [4], consumed: [4])) == UserState(history: [4], consumed: [4]))
        var badFlag = v1(pending: (1, 1), history: [], consumed: []); badFlag[4] = 2
        #expect(throws: UserStateError.self) { _ = try UserState.decode(badFlag) }
    }

    @Test("popular bucket: entries round-trip in order; truncation, a zero count and an unknown version are refused")
    func popularBucket() throws {
        let entries: [(String, Int64)] = [("item-7", 3), ("", 1), (String(repeating: "x", count: 300), Int64(UInt32.max) + 5)]
        var blob = PopularBucket.header
        for (k, c) in entries { Array(k.utf8).withUnsafeBytes { PopularBucket.append(key: $0, count: c, to: &blob) } }
        let decoded = try PopularBucket.decode(blob)
        #expect(decoded.map { String(decoding: $0.key, as: UTF8.self) } == entries.map(\.0))
        #expect(decoded.map(\.count) == entries.map(\.1))
        #expect(try PopularBucket.decode(PopularBucket.header).isEmpty)
        #expect(throws: PopularBucketError.self) { _ = try PopularBucket.decode(Array(blob.dropLast())) }
        #expect(throws: PopularBucketError.self) { _ = try PopularBucket.decode([2] + blob.dropFirst()) }
        #expect(throws: PopularBucketError.self) { _ = try PopularBucket.decode([]) }
        var zero = PopularBucket.header
        Array("a".utf8).withUnsafeBytes { PopularBucket.append(key: $0, count: 0, to: &zero) }
        #expect(throws: PopularBucketError.self) { _ = try PopularBucket.decode(zero) }
    }
}
