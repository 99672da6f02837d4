using System.Collections.Concurrent;

namespace Dynamo.Components.Processing;

/// <summary>
/// Request migration as one pipeline saw it (thread-safe): streams re-issued to another worker, by model and
/// reason, and the streams that failed anyway because they had used up <see cref="ProcessorOptions.MigrationLimit"/>
/// (or found no worker to move to).
/// </summary>
public sealed class MigrationCounters
{
    private readonly ConcurrentDictionary<(string Model, string Reason), long> _migrations = new();
    private readonly ConcurrentDictionary<string, long> _exhausted = new(StringComparer.Ordinal);

    /// <summary>Counts one migration of a stream of <paramref name="model"/>.</summary>
    public void Migrated(string model, string reason) => _migrations.AddOrUpdate((model, reason), 1, static (_, n) => n + 1);

    /// <summary>Counts a stream of <paramref name="model"/> that failed where it could not migrate.</summary>
    public void Exhausted(string model) => _exhausted.AddOrUpdate(model, 1, static (_, n) => n + 1);

    /// <summary>Every (model, reason) so far with its count.</summary>
    public IReadOnlyList<(string Model, string Reason, long Count)> Migrations() =>
        [.. _migrations.OrderBy(p => p.Key.Model, StringComparer.Ordinal).ThenBy(p => p.Key.Reason, StringComparer.Ordinal).Select(p => (p.Key.Model, p.Key.Reason, p.Value))];

    /// <summary>Every model with streams that could not migrate, with their count.</summary>
    public IReadOnlyList<(string Model, long Count)> ExhaustedStreams() =>
        [.. _exhausted.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => (p.Key, p.Value))];

    /// <summary>Migrations of every model and reason.</summary>
    public long Total => _migrations.Values.Sum();
}
