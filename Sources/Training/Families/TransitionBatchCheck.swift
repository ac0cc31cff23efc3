import Features

// The checks every RL family makes on a `transitions` batch before computing anything: the
// payload kind, the history length, the shape, and ids and rewards a model can use.

enum TransitionBatchCheck {
    /// The batch's transitions, or a `TrainerError.incompatibleBatch` naming what is wrong and
    /// what to do. `family` names the model in messages ("REINFORCE", "DDPG", "BCQ").
    static func transitions(_ batch: SourcedBatch, historyLength H: Int, family: String) throws -> TransitionBatch {
        let at = batch.positions.description
        guard let t = batch.transitions else {
            throw TrainerError.incompatibleBatch(
                "batch at \(at) holds \(batch.payload.kind), a \(family) model trains on transitions: point the trainer at the "
                + "behaviour feature streams, or use a model.kind that trains on \(batch.payload.kind)")
        }
        if t.historyLength != H {
            throw TrainerError.incompatibleBatch(
                "batch at \(at) has states of \(t.historyLength) items, the model expects \(H) (model.history_length): "
                + "the behaviour feature workers and the trainer disagree on the history length")
        }
        // Any reward window W ≥ 1 trains (REINFORCE discounts what it gets; the critics use column 0).
        let B = t.count, W = t.rewardWindow
        guard W >= 1, t.users.count == B, t.rewards.count == B * W, t.done.count == B, t.times.count == B, t.states.count == B * H else {
            throw TrainerError.incompatibleBatch("batch at \(at) is malformed: \(B) actions, \(t.users.count) users, "
                                                 + "\(t.rewards.count) rewards (window \(W)), \(t.done.count) done flags, \(t.times.count) times, "
                                                 + "\(t.states.count) state items (history \(H))")
        }
        if let a = t.actions.first(where: { $0 < BehaviorFileSource.firstItemId }) {
            throw TrainerError.incompatibleBatch("batch at \(at) has action item id \(a): actions are item ids from "
                                                 + "\(BehaviorFileSource.firstItemId) (0 pads a state, 1 is the item OOV id)")
        }
        if let u = t.users.first(where: { $0 < 0 }) { throw TrainerError.incompatibleBatch("batch at \(at) has user id \(u) < 0") }
        if let s = t.states.first(where: { $0 < 0 }) { throw TrainerError.incompatibleBatch("batch at \(at) has state item id \(s) < 0") }
        if let r = t.rewards.first(where: { !$0.isFinite }) { throw TrainerError.incompatibleBatch("batch at \(at) has reward \(r)") }
        return t
    }
}
