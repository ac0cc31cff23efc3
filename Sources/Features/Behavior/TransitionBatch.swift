// TransitionBatch: the unit that flows from behaviour feature workers to the RL trainers —
// B transitions (user, state, action, reward, done, time), one per behaviour event whose
// successor is known (see docs/ARCHITECTURE.md, "Behaviour events").

/// B transitions with history length H. `states` is row-major: transition b's state is
/// `states[b*H ..< (b+1)*H]`, the H items the user consumed before the action, oldest first,
/// padded in front with `paddingItem` when the user had fewer. The next state is that state
/// shifted by one with the action appended (`nextState(_:)`), so it is not stored.
public struct TransitionBatch: Sendable, Equatable {
    /// Item id 0 fills a state that has fewer than H items; real items start at `BehaviorIds.firstItemId`.
    public static let paddingItem: Int32 = 0

    public var historyLength: Int
    public var users: [Int32]
    public var states: [Int32]
    public var actions: [Int32]
    public var rewards: [Float]
    /// True when the user's next event came more than the session gap later, or was not known
    /// when the event-time watermark passed (see `BehaviorSettings.sessionGapSeconds`).
    public var done: [Bool]
    /// Event time of the action, Unix seconds.
    public var times: [Int64]

    public init(historyLength: Int, users: [Int32] = [], states: [Int32] = [], actions: [Int32] = [],
                rewards: [Float] = [], done: [Bool] = [], times: [Int64] = []) {
        self.historyLength = historyLength
        self.users = users; self.states = states; self.actions = actions
        self.rewards = rewards; self.done = done; self.times = times
    }

    public var count: Int { actions.count }

    /// Transition b's state (H item ids, oldest first).
    public func state(_ b: Int) -> ArraySlice<Int32> { states[(b * historyLength)..<((b + 1) * historyLength)] }

    /// Transition b's next state: its state without the oldest item, then the action.
    public func nextState(_ b: Int) -> [Int32] { Array(state(b).dropFirst()) + [actions[b]] }

    public mutating func append(user: Int32, state: some Collection<Int32>, action: Int32, reward: Float, done: Bool, time: Int64) {
        precondition(state.count == historyLength, "a state holds exactly historyLength items")
        users.append(user); states.append(contentsOf: state); actions.append(action)
        rewards.append(reward); self.done.append(done); times.append(time)
    }

    public mutating func removeAll() {
        users.removeAll(keepingCapacity: true); states.removeAll(keepingCapacity: true)
        actions.removeAll(keepingCapacity: true); rewards.removeAll(keepingCapacity: true)
        done.removeAll(keepingCapacity: true); times.removeAll(keepingCapacity: true)
    }
}

/// A transition batch with its source, as stored in a feature stream.
public struct SourcedTransitionBatch: Sendable, Equatable {
    public var batch: TransitionBatch
    public var source: FeatureBatchSource
    public init(batch: TransitionBatch, source: FeatureBatchSource) { self.batch = batch; self.source = source }
}
