using System.Text;

namespace Dynamo.Components.Parallel;

/// <summary>
/// What every rank of a group must share before it computes with the others (the model file's hash, the shard layout,
/// the engine's settings): <see cref="Fingerprint"/> is compared byte for byte at the rendezvous, <see cref="Description"/>
/// is what the refusal quotes ("rank 1 disagrees with rank 0: model sha256 ab12.. vs cd34..").
/// </summary>
/// <param name="Fingerprint">Opaque bytes; two ranks agree when these are equal.</param>
/// <param name="Description">One human-readable line saying what the bytes stand for.</param>
public sealed record CollectiveAgreement(ReadOnlyMemory<byte> Fingerprint, string Description)
{
    /// <summary>An agreement whose fingerprint is the UTF-8 of <paramref name="description"/> (enough when the line names everything).</summary>
    public static CollectiveAgreement FromText(string description) => new(Encoding.UTF8.GetBytes(description), description);

    /// <summary>Whether the fingerprints are equal (the descriptions are only quoted).</summary>
    public bool Matches(CollectiveAgreement other) => Fingerprint.Span.SequenceEqual(other.Fingerprint.Span);
}
