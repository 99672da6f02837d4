using System.Diagnostics.CodeAnalysis;

namespace Dynamo.Llm.Routing;

/// <summary>
/// The workers a <see cref="KvRouter"/> routes to: by id, by slot (a slot is a worker's bit in the
/// prefix tables; a removed worker's slot is reused), and as an array sorted by id that the cost loop walks.
/// Not thread-safe: the router's gate guards it.
/// </summary>
internal sealed class WorkerSlots
{
    private readonly Dictionary<RoutingTarget, KvWorkerState> _byId = [];
    private readonly List<KvWorkerState?> _bySlot = [];
    private readonly Stack<int> _free = new();

    /// <summary>The workers by ascending id (a new array after every change; read it once per decision).</summary>
    public KvWorkerState[] Sorted { get; private set; } = [];

    public IEnumerable<RoutingTarget> Ids => _byId.Keys;

    public bool Contains(RoutingTarget workerId) => _byId.ContainsKey(workerId);

    public bool TryGet(RoutingTarget workerId, [MaybeNullWhen(false)] out KvWorkerState worker) => _byId.TryGetValue(workerId, out worker);

    /// <summary>The worker in <paramref name="slot"/>, or null when the slot is free.</summary>
    public KvWorkerState? At(int slot) => (uint)slot < (uint)_bySlot.Count ? _bySlot[slot] : null;

    /// <summary>Adds a worker in a free slot (the lowest id is not promised).</summary>
    public KvWorkerState Add(RoutingTarget workerId, int batchBudget)
    {
        int slot;
        if (_free.Count > 0)
        {
            slot = _free.Pop();
        }
        else
        {
            slot = _bySlot.Count;
            _bySlot.Add(null);
        }

        var worker = new KvWorkerState(workerId, slot, batchBudget);
        _bySlot[slot] = worker;
        _byId[workerId] = worker;
        Sorted = [.. _byId.Values.OrderBy(w => w.Target)];
        return worker;
    }

    /// <summary>Removes a worker and frees its slot; null when unknown.</summary>
    public KvWorkerState? Remove(RoutingTarget workerId)
    {
        if (!_byId.Remove(workerId, out KvWorkerState? worker))
        {
            return null;
        }

        _bySlot[worker.Slot] = null;
        _free.Push(worker.Slot);
        Sorted = [.. _byId.Values.OrderBy(w => w.Target)];
        return worker;
    }
}
