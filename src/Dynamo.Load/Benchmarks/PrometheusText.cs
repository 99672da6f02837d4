using System.Globalization;
using System.Text.RegularExpressions;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// Reads the samples of a Prometheus text exposition (what our <c>/metrics</c> endpoints serve): one sample a line,
/// <c>name{label="value",...} number</c>; comments, blank lines and lines that are not samples are skipped.
/// </summary>
internal static partial class PrometheusText
{
    public static IEnumerable<PrometheusSample> Parse(string text)
    {
        foreach (string raw in text.Split('\n'))
        {
            string line = raw.Trim();
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            Match m = SampleLine().Match(line);
            if (!m.Success || !double.TryParse(m.Groups["value"].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
            {
                continue;
            }

            var labels = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (Match label in LabelPair().Matches(m.Groups["labels"].Value))
            {
                labels[label.Groups["name"].Value] = label.Groups["value"].Value.Replace("\\\"", "\"", StringComparison.Ordinal).Replace("\\\\", "\\", StringComparison.Ordinal);
            }

            yield return new PrometheusSample(m.Groups["name"].Value, labels, value);
        }
    }

    [GeneratedRegex(@"^(?<name>[A-Za-z_:][A-Za-z0-9_:]*)(\{(?<labels>.*)\})?\s+(?<value>\S+)(\s+\S+)?$")]
    private static partial Regex SampleLine();

    [GeneratedRegex(@"(?<name>[A-Za-z_][A-Za-z0-9_]*)=""(?<value>(\\.|[^""\\])*)""")]
    private static partial Regex LabelPair();
}
