/* Fee schedule in basis points, one per customer tier. */
const int fee_bps[4] = { 250, 180, 120, 90 };
