namespace Dynamo.Load.Plot;

/// <summary>
/// A raster of RGBA pixels (row-major, top row first) with the few drawing operations a plot needs;
/// drawing outside the image is clipped.
/// </summary>
internal sealed class RgbaImage
{
    public RgbaImage(int width, int height, Rgba background)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        Width = width;
        Height = height;
        Pixels = new byte[width * height * 4];
        FillRect(0, 0, width, height, background);
    }

    public int Width { get; }

    public int Height { get; }

    public byte[] Pixels { get; }

    public Rgba this[int x, int y]
    {
        get
        {
            int i = ((y * Width) + x) * 4;
            return new Rgba(Pixels[i], Pixels[i + 1], Pixels[i + 2], Pixels[i + 3]);
        }
    }

    public void SetPixel(int x, int y, Rgba color)
    {
        if ((uint)x >= (uint)Width || (uint)y >= (uint)Height)
        {
            return;
        }

        int i = ((y * Width) + x) * 4;
        Pixels[i] = color.R;
        Pixels[i + 1] = color.G;
        Pixels[i + 2] = color.B;
        Pixels[i + 3] = color.A;
    }

    public void FillRect(int x, int y, int width, int height, Rgba color)
    {
        for (int yy = Math.Max(0, y); yy < Math.Min(Height, y + height); yy++)
        {
            for (int xx = Math.Max(0, x); xx < Math.Min(Width, x + width); xx++)
            {
                SetPixel(xx, yy, color);
            }
        }
    }

    /// <summary>A one-pixel line (Bresenham).</summary>
    public void DrawLine(int x0, int y0, int x1, int y1, Rgba color)
    {
        int dx = Math.Abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
        int dy = -Math.Abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
        int err = dx + dy;
        while (true)
        {
            SetPixel(x0, y0, color);
            if (x0 == x1 && y0 == y1)
            {
                return;
            }

            int e2 = 2 * err;
            if (e2 >= dy)
            {
                err += dy;
                x0 += sx;
            }

            if (e2 <= dx)
            {
                err += dx;
                y0 += sy;
            }
        }
    }

    /// <summary>Text in <see cref="BitmapFont"/>, top-left at (x, y), each font pixel a <paramref name="scale"/>² square.</summary>
    public void DrawText(int x, int y, string text, Rgba color, int scale = 1)
    {
        foreach (char c in text)
        {
            ReadOnlySpan<byte> rows = BitmapFont.Glyph(c);
            for (int row = 0; row < BitmapFont.Height; row++)
            {
                for (int col = 0; col < BitmapFont.Width; col++)
                {
                    if ((rows[row] & (1 << (BitmapFont.Width - 1 - col))) != 0)
                    {
                        FillRect(x + (col * scale), y + (row * scale), scale, scale, color);
                    }
                }
            }

            x += BitmapFont.Advance * scale;
        }
    }

    /// <summary>Width in pixels of <paramref name="text"/> drawn at <paramref name="scale"/>.</summary>
    public static int TextWidth(string text, int scale = 1) => text.Length == 0 ? 0 : ((text.Length * BitmapFont.Advance) - 1) * scale;
}
