using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using System.Text;

namespace Dynamo.Tests.Load.Plot;

/// <summary>
/// Reads back the PNGs our encoder writes (8-bit RGBA, filter 0, no interlace), checking the signature,
/// chunk order, every CRC and the decompressed size on the way.
/// </summary>
public static class PngReader
{
    public sealed record Image(int Width, int Height, byte[] Rgba, IReadOnlyList<string> Chunks)
    {
        public (byte R, byte G, byte B, byte A) this[int x, int y]
        {
            get
            {
                int i = ((y * Width) + x) * 4;
                return (Rgba[i], Rgba[i + 1], Rgba[i + 2], Rgba[i + 3]);
            }
        }
    }

    public static Image Read(byte[] png)
    {
        Assert.Equal([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], png[..8]);
        int pos = 8, width = 0, height = 0;
        var chunks = new List<string>();
        using var idat = new MemoryStream();
        while (pos < png.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(pos));
            string type = Encoding.ASCII.GetString(png, pos + 4, 4);
            ReadOnlySpan<byte> data = png.AsSpan(pos + 8, length);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos + 8 + length));
            Assert.Equal(Crc32.HashToUInt32(png.AsSpan(pos + 4, length + 4)), crc);
            chunks.Add(type);
            if (type == "IHDR")
            {
                Assert.Equal(13, length);
                width = BinaryPrimitives.ReadInt32BigEndian(data);
                height = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                Assert.Equal([8, 6, 0, 0, 0], data[8..].ToArray());
            }
            else if (type == "IDAT")
            {
                idat.Write(data);
            }

            pos += 12 + length;
        }

        Assert.Equal(png.Length, pos);
        Assert.Equal("IHDR", chunks[0]);
        Assert.Equal("IEND", chunks[^1]);
        idat.Position = 0;
        using var zlib = new ZLibStream(idat, CompressionMode.Decompress);
        using var raw = new MemoryStream();
        zlib.CopyTo(raw);
        byte[] scanlines = raw.ToArray();
        int stride = (width * 4) + 1;
        Assert.Equal(height * stride, scanlines.Length);
        var rgba = new byte[width * height * 4];
        for (int y = 0; y < height; y++)
        {
            Assert.Equal(0, scanlines[y * stride]);
            Array.Copy(scanlines, (y * stride) + 1, rgba, y * width * 4, width * 4);
        }

        return new Image(width, height, rgba, chunks);
    }
}
