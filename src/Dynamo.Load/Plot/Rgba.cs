namespace Dynamo.Load.Plot;

/// <summary>An 8-bit-per-channel colour.</summary>
internal readonly record struct Rgba(byte R, byte G, byte B, byte A = 255)
{
    public static Rgba White => new(255, 255, 255);

    public static Rgba Black => new(0, 0, 0);

    public static Rgba Grey => new(200, 200, 200);
}
