namespace Dynamo.Frontend.Admission;

/// <summary>
/// A request's hold on one of the frontend's generating slots (and on its client's and model's counts): given by
/// <see cref="AdmissionController.EnterAsync"/>, released once by <see cref="Dispose"/> (further calls do nothing),
/// which hands the slot to the next waiting request.
/// </summary>
internal sealed class AdmissionSlot : IDisposable
{
    private readonly AdmissionController _owner;
    private int _released;

    internal AdmissionSlot(AdmissionController owner, string client, string model)
    {
        _owner = owner;
        Client = client;
        Model = model;
    }

    /// <summary>The controller the slot belongs to.</summary>
    internal AdmissionController Owner => _owner;

    /// <summary>The client the request counts against.</summary>
    public string Client { get; }

    /// <summary>The model the request counts against.</summary>
    public string Model { get; }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0)
        {
            _owner.Release(this);
        }
    }
}
