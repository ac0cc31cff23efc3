import StreamRecNumerics

/// probs[B] = σ(logits); returns Σ_b logloss(logit_b, label_b) (a sum: callers divide).
public func sigmoid_cross_entropy_forward(
    probs: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
    labels: UnsafePointer<Float>, B: Int
) -> Double {
    var total = 0.0
    for b in 0..<B {
        probs[b] = sigmoid(logits[b])
        total += Double(logLoss(logit: logits[b], label: labels[b]))
    }
    return total
}

/// dlogits[B] = scale · (σ(z) − y): the gradient of `scale` × the summed log loss.
public func sigmoid_cross_entropy_backward(
    dlogits: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>,
    labels: UnsafePointer<Float>, scale: Float, B: Int
) {
    for b in 0..<B { dlogits[b] = scale * (probs[b] - labels[b]) }
}
